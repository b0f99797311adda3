"""Reviewer-corrected cells of a run: training samples for fine-tuning (`census train --from-corrections`),
texts for the language model (`census lm --from-corrections`) and the training export
(`census export --format training`).

A cell's latest correction with status `corrected` and a text gives its true literal text. Its crop is
cut as the recogniser cut the one it read: the run's page image preprocessed again (deskewed, cropped to
the table, contrast normalised), the cell's box brought back from original page pixels, and
`pipeline.stages.cells.text_crop` (inset, rule remnants removed, trimmed to the writing). A crop cut from the
original pixels instead would teach the model cells unlike those it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import UsageError
from pipeline.htr.text import normalize_text

LATEST_CORRECTIONS = """
    SELECT c.cell_id, c.page_id, c.field, c.machine_text, c.engine, c.model, c.x0, c.y0, c.x1, c.y1,
           k.new_value AS text, k.reviewer, k.corrected_at, k.annotation_id
    FROM cells c JOIN (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY cell_id ORDER BY corrected_at DESC, correction_id DESC) AS rank
        FROM corrections) k ON k.cell_id = c.cell_id AND k.rank = 1
    WHERE k.new_status = 'corrected' AND TRIM(k.new_value) != ''
    ORDER BY c.page_id, c.row, c.col"""


def require_store(run_dir: Path) -> None:
    from pipeline.run import store

    if not (Path(run_dir) / store.STORE_NAME).is_file():
        raise UsageError(f"no store at {Path(run_dir) / store.STORE_NAME}: run `census run` first")


def latest_corrections(run_dir: Path) -> list[dict[str, Any]]:
    """Every cell whose latest correction is `corrected` with a text, with that text (`text`), by page."""
    from pipeline.run import store

    require_store(run_dir)
    with store.connect(Path(run_dir), readonly=True) as connection:
        return [dict(row) for row in connection.execute(LATEST_CORRECTIONS)]


def corrected_texts(run_dir: Path) -> list[str]:
    """The corrected text of every cell whose latest correction is `corrected`."""
    return [text for text in (normalize_text(cell["text"]) for cell in latest_corrections(run_dir)) if text]


def read_crops(run_dir: Path, cells: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The crop the recogniser read for each of `cells` (by cell id); cells of a page whose image the run
    no longer has are left out, with a message."""
    from pipeline.stages.cells import text_crop
    from pipeline.models import BBox
    from pipeline.stages.preprocess import preprocess, to_processed
    from pipeline.run.paths import load_page_image

    by_page: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        by_page.setdefault(cell["page_id"], []).append(cell)
    crops = {}
    for page_id, page_cells in by_page.items():
        image = load_page_image(Path(run_dir), page_id)
        if image is None:
            continue
        prep, processed = preprocess(image)
        for cell in page_cells:
            box = BBox(**{key: cell[key] for key in ("x0", "y0", "x1", "y1")})
            crop = text_crop(processed, to_processed(prep, box))
            if crop.size:
                crops[cell["cell_id"]] = crop
    return crops


def corrected_cells(run_dir: Path, height: int) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Normalised crops, corrected texts and page ids of every cell whose latest correction is `corrected`."""
    from pipeline.htr.preprocess import normalize_crop

    cells = [cell for cell in latest_corrections(run_dir) if normalize_text(cell["text"])]
    crops = read_crops(run_dir, cells)
    kept = [cell for cell in cells if cell["cell_id"] in crops]
    return ([normalize_crop(crops[cell["cell_id"]], height) for cell in kept],
            [normalize_text(cell["text"]) for cell in kept], [cell["page_id"] for cell in kept])


def validation_pages(pages: list[str], share: float = 0.1) -> set[str]:
    """Pages whose corrected cells validate a fine-tuning instead of training it: in sha1 order, until they
    hold `share` of the cells (at least one page; none when all the cells are on one page). Whole pages,
    so that the validation cells are not the training cells' neighbours."""
    import hashlib
    from collections import Counter

    counts = Counter(pages)
    if len(counts) < 2:
        return set()
    held: set[str] = set()
    cells = 0
    for page in sorted(counts, key=lambda page: hashlib.sha1(page.encode()).hexdigest()):
        held.add(page)
        cells += counts[page]
        if cells >= share * len(pages):
            break
    return held
