"""Corrected cells as recogniser training data (`census export RUN_DIR --format training --out DIR`).

Layout written under OUT_DIR (line images with their texts, as kraken, PyLaia and others read them;
`census train --from-corrections RUN_DIR` cuts the same crops from the run itself):

    OUT_DIR/lines/<cell_key>.png      the crop the recogniser read (grey: the page deskewed and
                                      normalised, the cell inset, rule remnants removed; see
                                      `pipeline.htr.corrections`)
    OUT_DIR/lines/<cell_key>.gt.txt   the reviewer's text, UTF-8, one line, no trailing newline
    OUT_DIR/manifest.jsonl            one JSON object per line image:
        {"image": "lines/<cell_key>.png", "text": ..., "cell_id": ..., "page_id": ..., "field": ...,
         "machine_text": ..., "engine": ..., "model": ..., "reviewer": ..., "corrected_at": ...,
         "annotation_id": ...}

`<cell_key>` is the cell id made filesystem-safe (':' -> '_'). Only cells whose latest
correction has status `corrected` and a non-empty text are exported (illegible and empty
verdicts carry no text to learn). Paths in the manifest are relative to OUT_DIR. Writing is
idempotent: exporting again overwrites the same files and rewrites the manifest atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.htr.corrections import latest_corrections, read_crops
from review import crops


def export_training(run_dir: Path, out_dir: Path) -> int:
    """Write line images, texts and the manifest for every corrected cell; return how many."""
    import cv2

    cells = latest_corrections(run_dir)
    line_crops = read_crops(run_dir, cells)
    lines_dir = Path(out_dir) / "lines"
    lines_dir.mkdir(parents=True, exist_ok=True)
    manifest: list[str] = []
    for cell in (cell for cell in cells if cell["cell_id"] in line_crops):
        key = crops.safe_name(cell["cell_id"])
        cv2.imwrite(str(lines_dir / f"{key}.png"), line_crops[cell["cell_id"]])
        (lines_dir / f"{key}.gt.txt").write_text(cell["text"].strip(), encoding="utf-8")
        manifest.append(json.dumps({"image": f"lines/{key}.png", "text": cell["text"].strip(),
                                    **{name: cell[name] for name in (
                                        "cell_id", "page_id", "field", "machine_text", "engine", "model",
                                        "reviewer", "corrected_at", "annotation_id")}}, ensure_ascii=False))
    partial = Path(out_dir) / "manifest.jsonl.partial"
    partial.write_text("".join(line + "\n" for line in manifest), encoding="utf-8")
    os.replace(partial, Path(out_dir) / "manifest.jsonl")
    return len(manifest)
