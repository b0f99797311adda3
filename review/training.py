"""Corrected cells as recogniser training data (`census export RUN_DIR --format training --out DIR`).

Layout written under OUT_DIR (read by `census train --from-corrections`):

    OUT_DIR/lines/<cell_key>.png      the cell's text crop (grey, original page pixels, cut as
                                      the recogniser's own crops: inset, ruling remnants removed)
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
from typing import Any

from pipeline import store
from pipeline.errors import UsageError
from pipeline.models import BBox
from review import crops

LATEST_CORRECTIONS = """
    SELECT c.cell_id, c.page_id, c.field, c.machine_text, c.engine, c.model, c.x0, c.y0, c.x1, c.y1,
           k.new_value AS text, k.reviewer, k.corrected_at, k.annotation_id
    FROM cells c JOIN (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY cell_id ORDER BY corrected_at DESC, correction_id DESC) AS rank
        FROM corrections) k ON k.cell_id = c.cell_id AND k.rank = 1
    WHERE k.new_status = 'corrected' AND TRIM(k.new_value) != ''
    ORDER BY c.page_id, c.row, c.col"""


def corrected_cells(run_dir: Path) -> list[dict[str, Any]]:
    if not (Path(run_dir) / store.STORE_NAME).is_file():
        raise UsageError(f"no store at {Path(run_dir) / store.STORE_NAME}: run `census run` first")
    with store.connect(Path(run_dir), readonly=True) as connection:
        return [dict(row) for row in connection.execute(LATEST_CORRECTIONS)]


def export_training(run_dir: Path, out_dir: Path) -> int:
    """Write line images, texts and the manifest for every corrected cell; return how many."""
    from pipeline.cells import text_crop
    import cv2

    cells = corrected_cells(run_dir)
    lines_dir = Path(out_dir) / "lines"
    lines_dir.mkdir(parents=True, exist_ok=True)
    manifest: list[str] = []
    for page_id in sorted({cell["page_id"] for cell in cells}):
        image = crops.load_page(Path(run_dir), page_id)
        if image is None:
            continue
        for cell in (cell for cell in cells if cell["page_id"] == page_id):
            key = crops.safe_name(cell["cell_id"])
            line = text_crop(image, BBox(x0=cell["x0"], y0=cell["y0"], x1=cell["x1"], y1=cell["y1"]))
            if line.size == 0:
                continue
            cv2.imwrite(str(lines_dir / f"{key}.png"), line)
            (lines_dir / f"{key}.gt.txt").write_text(cell["text"].strip(), encoding="utf-8")
            manifest.append(json.dumps({"image": f"lines/{key}.png", "text": cell["text"].strip(),
                                        **{name: cell[name] for name in (
                                            "cell_id", "page_id", "field", "machine_text", "engine", "model",
                                            "reviewer", "corrected_at", "annotation_id")}}, ensure_ascii=False))
    partial = Path(out_dir) / "manifest.jsonl.partial"
    partial.write_text("".join(line + "\n" for line in manifest), encoding="utf-8")
    os.replace(partial, Path(out_dir) / "manifest.jsonl")
    return len(manifest)
