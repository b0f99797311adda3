"""Reviewer-corrected cells of a run, as training samples for fine-tuning (`census train --from-corrections`)
and as texts for the language model (`census lm --from-corrections`).

A cell's latest correction with status `corrected` gives its true literal text; the crop is cut from the
original page (cells store their box in original page pixels) and normalised like every training crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import UsageError
from pipeline.htr.text import normalize_text

LATEST_CORRECTIONS = """
SELECT c.cell_id, c.x0, c.y0, c.x1, c.y1, p.source, p.page_index, k.new_value
FROM corrections k
JOIN (SELECT cell_id, MAX(corrected_at) AS latest FROM corrections GROUP BY cell_id) m
  ON m.cell_id = k.cell_id AND m.latest = k.corrected_at
JOIN cells c ON c.cell_id = k.cell_id
JOIN pages p ON p.page_id = c.page_id
WHERE k.new_status = 'corrected' AND COALESCE(k.new_value, '') != ''
ORDER BY p.source, p.page_index
"""


def _latest_corrections(run_dir: Path) -> list[tuple]:
    from pipeline.store import connect

    if not (Path(run_dir) / "census.sqlite").exists():
        raise UsageError(f"no census.sqlite in {run_dir}")
    with connect(Path(run_dir), readonly=True) as connection:
        return connection.execute(LATEST_CORRECTIONS).fetchall()


def corrected_texts(run_dir: Path) -> list[str]:
    """The corrected text of every cell whose latest correction is `corrected`."""
    return [text for text in (normalize_text(row[-1]) for row in _latest_corrections(run_dir)) if text]


def corrected_cells(run_dir: Path, height: int) -> tuple[list[np.ndarray], list[str]]:
    """Normalised crops and corrected texts of every cell whose latest correction is `corrected`."""
    from pipeline.htr.preprocess import normalize_crop
    from pipeline.ingest import load_page

    rows = _latest_corrections(run_dir)
    crops, texts, loaded = [], [], (None, None)
    for _cell, x0, y0, x1, y1, source, page_index, text in rows:
        if loaded[0] != (source, page_index):
            loaded = ((source, page_index), load_page(Path(source), page_index)[1])
        page = loaded[1]
        crop = page[max(0, y0):y1, max(0, x0):x1]
        if crop.size and normalize_text(text):
            crops.append(normalize_crop(crop, height))
            texts.append(normalize_text(text))
    return crops, texts
