"""Cell crops and row strips cut from the ingested page images, for reviewers and training data.

Pages are saved by the runner as RUN_DIR/images/<page_id>.jpg in original page pixels (the
cells table's x0..y1). Only small crops are written (RUN_DIR/review/crops, /rows) and served
to Label Studio through local-files storage; full scans are never uploaded. A crop shows the
reviewed row: the masked cells of restricted persons on other rows that reach into it are
painted over (pipeline.dataset.embargo.redact), as in every other image the run gives out.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CROPS_DIR = "review/crops"
ROWS_DIR = "review/rows"
MAX_STRIP_WIDTH = 1600  # wider row strips are scaled down: the cell crop carries the detail


def safe_name(identifier: str) -> str:
    """A filesystem- and URL-safe file stem for a cell or row id (ids contain ':')."""
    return identifier.replace(":", "_").replace("/", "_")


def page_image_path(run_dir: Path, page_id: str) -> Path:
    from pipeline.run.paths import page_image_path as runner_path

    return runner_path(Path(run_dir), page_id)


def crop_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / CROPS_DIR / f"{safe_name(cell_id)}.png"


def row_strip_path(run_dir: Path, page_id: str, row: int) -> Path:
    return Path(run_dir) / ROWS_DIR / f"{safe_name(page_id)}_r{row}.jpg"


def padded(box: tuple[int, int, int, int], shape: tuple[int, ...], fraction: float, minimum: int
           ) -> tuple[int, int, int, int]:
    """`box` grown by `fraction` of its height (at least `minimum` px) and clipped to the image."""
    x0, y0, x1, y1 = box
    pad = max(minimum, int((y1 - y0) * fraction))
    height, width = shape[:2]
    return max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)


def cut(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


def save(path: Path, image: np.ndarray, extension: str, parameters: list[int]) -> None:
    """Encode in memory then write: much faster than cv2.imwrite for thousands of small files."""
    import cv2

    ok, encoded = cv2.imencode(extension, image, parameters)
    if ok:
        path.write_bytes(encoded.tobytes())


def page_images_present(run_dir: Path, page_ids: Iterable[str]) -> set[str]:
    """The pages whose ingested image exists (cells of the others cannot be shown)."""
    present = {page_id for page_id in page_ids if page_image_path(run_dir, page_id).is_file()}
    for page_id in sorted(set(page_ids) - present):
        print(f"review: page image {page_image_path(run_dir, page_id)} is missing; its cells are skipped",
              file=sys.stderr)
    return present


def write_cell_images(run_dir: Path, cells: Iterable[dict], rows: dict[tuple[str, int], tuple[int, int, int, int]],
                      restricted: set[tuple[str, int]]) -> set[str]:
    """Write the crop of each cell and the strip of its row; return the ids of cells written.

    `cells` are dicts with cell_id, page_id, row, x0, y0, x1, y1; `rows` maps (page_id, row)
    to the row's bounding box; `restricted` holds the (page_id, row) of restricted persons
    (embargo.restricted_rows), whose masked cells are blanked in the crops of other rows.
    Each page image is decoded once.
    """
    import cv2

    from pipeline.dataset import dataset, embargo
    from pipeline.run.paths import load_page_image

    by_page: dict[str, list[dict]] = {}
    for cell in cells:
        by_page.setdefault(cell["page_id"], []).append(cell)
    (Path(run_dir) / CROPS_DIR).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / ROWS_DIR).mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for page_id, page_cells in by_page.items():
        image = load_page_image(run_dir, page_id)
        if image is None:
            continue
        on_page = {row for page, row in restricted if page == page_id}
        hidden = dataset.page_hidden_boxes(run_dir, page_id, on_page)

        def redacted(box: tuple[int, int, int, int], own_row: int) -> np.ndarray:
            others = [hidden_box for row, boxes in hidden.items() if row != own_row for hidden_box in boxes]
            return embargo.redact(cut(image, box).copy(), others, origin=box[:2])

        for row in {cell["row"] for cell in page_cells}:
            strip = redacted(padded(rows[(page_id, row)], image.shape, 0.15, 4), row)
            if strip.shape[1] > MAX_STRIP_WIDTH:
                scale = MAX_STRIP_WIDTH / strip.shape[1]
                strip = cv2.resize(strip, (MAX_STRIP_WIDTH, max(1, round(strip.shape[0] * scale))),
                                   interpolation=cv2.INTER_AREA)
            save(row_strip_path(run_dir, page_id, row), strip, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 85])
        for cell in page_cells:
            box = padded((cell["x0"], cell["y0"], cell["x1"], cell["y1"]), image.shape, 0.2, 6)
            save(crop_path(run_dir, cell["cell_id"]), redacted(box, cell["row"]), ".png",
                 [cv2.IMWRITE_PNG_COMPRESSION, 1])
            written.add(cell["cell_id"])
    return written
