"""Does the table grid found on a real page cut its handwriting? Each ground-truth text line (ALTO/PAGE XML)
should fall inside one detected cell: a line cut across a row or column rule is read in pieces, or not at all
(`python -m pipeline.evaluation.layout_lines GT_DIR [--split test] [--corpus NAME]`; prints one JSON object).

A page goes through `census run`'s preprocess and layout (no template: as many columns as are ruled). Each
line's polygon is brought into the processed page's pixels, and its core is found from the handwriting in
its box (`written_core`): from the first to the last pixel column written, and down the pixel rows holding
the middle 80% of the writing, so that ascenders and descenders reaching into the next row do not count.
The polygons alone will not do: LECTAUREP's are padded some 20 px past the writing, over column rules it
never touches, and reach further below a line than above (with the polygons' middle half as the core, the
train pages read 90.3% inside one cell, against 95.6% with the writing's). The core is laid over the grid.
A line is
*inside one cell* when CORE_SHARE of its core lies in one cell (header cells included), *outside the table*
when under half of it lies in the grid at all (titles, margin notes: reported, not scored), else *cut* across
rows, columns or both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

CORE_SHARE = 0.9  # of a line's core in one cell: inside it
INKED_COLUMN = 2  # px of writing in a pixel column of a line's core: the line reaches there
WRITING_CORE = 0.8  # of a line's writing, by pixel rows: its core
IN_TABLE_SHARE = 0.5  # of a line's core in the grid: a line of the table, scored
COUNTED_AS = {"inside": "inside_one_cell", "outside": "outside_table", "rows": "cut_rows", "columns": "cut_columns",
              "both": "cut_both"}  # what `classify` says -> the PageLines count it adds to


class PageLines(BaseModel):
    page: str
    refused: str | None = None  # the layout's reason when it found no table
    lines: int = 0
    outside_table: int = 0
    inside_one_cell: int = 0
    cut_rows: int = 0  # across a row boundary only
    cut_columns: int = 0  # across a column boundary only
    cut_both: int = 0
    header_lines: int = 0  # lines of the table mostly in its header band (printed headings) ...
    header_inside: int = 0  # ... and of those, inside one cell
    layout_ms: float = 0.0


def _overlap(start: float, end: float, bounds: list[int]) -> np.ndarray:
    """Length of [start, end) inside each interval of `bounds`."""
    edges = np.asarray(bounds, dtype=np.float64)
    return np.clip(np.minimum(end, edges[1:]) - np.maximum(start, edges[:-1]), 0, None)


def classify(core: tuple[float, float, float, float], row_bounds: list[int], col_bounds: list[int],
             merged: tuple[tuple[float, float, float, float], ...] = ()) -> str:
    """'inside', 'outside', 'rows', 'columns' or 'both' for a line core (x0, y0, x1, y1) over a grid
    (bounds as in `Grid`), and its `merged` cells (`merged_cells`): each of those is one cell."""
    x0, y0, x1, y1 = core
    area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
    in_rows, in_cols = _overlap(y0, y1, row_bounds), _overlap(x0, x1, col_bounds)
    cells = np.outer(in_rows, in_cols) / area
    if cells.sum() < IN_TABLE_SHARE:
        return "outside"
    in_merged = max((_overlap(x0, x1, [left, right])[0] * _overlap(y0, y1, [top, bottom])[0] / area
                     for left, top, right, bottom in merged), default=0.0)
    if max(cells.max(), in_merged) >= CORE_SHARE:
        return "inside"
    spans_rows = np.count_nonzero(in_rows / max(y1 - y0, 1e-9) > 1 - CORE_SHARE) > 1
    spans_cols = np.count_nonzero(in_cols / max(x1 - x0, 1e-9) > 1 - CORE_SHARE) > 1
    return "both" if spans_rows and spans_cols else "rows" if spans_rows else "columns"


def merged_cells(grid) -> tuple[tuple[int, int, int, int], ...]:
    """The boxes of a grid's cells over several columns: each group title over its sub-columns, and each
    cell written across sub-columns."""
    from pipeline.stages.layout import cell_box

    rows, cols = grid.row_bounds, grid.col_bounds
    titles = [(cols[group.first], rows[0], cols[group.last + 1], group.bottom) for group in grid.header_groups]
    written = [cell_box(grid, span.row, span.col) for span in grid.spans]
    return tuple(titles + [(box.x0, box.y0, box.x1, box.y1) for box in written])


def line_boxes(page, image_shape: tuple[int, ...], to_original: list[list[float]]) -> list[tuple[float, ...]]:
    """Each readable line's polygon's box in processed pixels (mapped back through `to_original`)."""
    from pipeline.htr.data import image_scale

    x_scale, y_scale = image_scale(page, image_shape)
    forward = np.vstack([np.asarray(to_original, dtype=np.float64), [0.0, 0.0, 1.0]])
    backward = np.linalg.inv(forward)  # original page pixel -> processed pixel
    boxes = []
    for line in page.lines:
        points = np.array([(x * x_scale, y * y_scale, 1.0) for x, y in line.polygon]) @ backward.T
        (x0, y0), (x1, y1) = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        boxes.append((x0, y0, x1, y1))
    return boxes


def written_core(box: tuple[float, ...], ink: np.ndarray) -> tuple[float, ...]:
    """A line's core from the writing (`ink`) in its polygon's `box`: from its first to its last pixel column
    with writing (INKED_COLUMN px of it or more in the box's middle half, so that neighbouring lines reaching
    into the box do not widen it), and down the pixel rows that hold the middle WRITING_CORE of that writing
    (ascenders, descenders and neighbours' strokes left out). The box's middle half when it holds none."""
    x0, y0, x1, y1 = (max(0, int(round(value))) for value in box)
    quarter = (y1 - y0) // 4
    middle = ink[y0 + quarter: y1 - quarter, x0: x1]
    inked = np.flatnonzero(middle.sum(axis=0) >= INKED_COLUMN) if middle.size else np.zeros(0, dtype=int)
    if not len(inked):
        return (box[0], box[1] + (box[3] - box[1]) / 4, box[2], box[3] - (box[3] - box[1]) / 4)
    left, right = x0 + int(inked[0]), x0 + int(inked[-1]) + 1
    share = np.cumsum(ink[y0: y1, left: right].sum(axis=1)) / ink[y0: y1, left: right].sum()
    outer = (1 - WRITING_CORE) / 2
    return (left, y0 + int(np.searchsorted(share, outer)), right, y0 + int(np.searchsorted(share, 1 - outer)) + 1)


def score_page(page) -> PageLines:
    from pipeline.errors import PageError
    from pipeline.htr.data import load_grey
    from pipeline.stages.image import line_masks
    from pipeline.stages.layout import detect_grid, text_ink
    from pipeline.stages.preprocess import preprocess

    image = load_grey(page.image)
    start = time.perf_counter()
    try:
        prep, processed = preprocess(image)
        grid = detect_grid(processed)
    except PageError as error:
        return PageLines(page=page.stem, refused=str(error), lines=len(page.lines))
    result = PageLines(page=page.stem, lines=len(page.lines), layout_ms=1000 * (time.perf_counter() - start))
    writing = text_ink(processed, np.logical_or(*line_masks(processed)))
    merged = merged_cells(grid)
    for box in line_boxes(page, image.shape, prep.to_original):
        core = written_core(box, writing)
        kind = classify(core, grid.row_bounds, grid.col_bounds, merged)
        setattr(result, COUNTED_AS[kind], getattr(result, COUNTED_AS[kind]) + 1)
        if kind != "outside" and (core[1] + core[3]) / 2 < grid.row_bounds[grid.header_rows]:
            result.header_lines += 1
            result.header_inside += kind == "inside"
    return result


def summarise(pages: list[PageLines]) -> dict:
    scored = [page for page in pages if page.refused is None]
    total = {key: sum(getattr(page, key) for page in scored)
             for key in ("lines", "outside_table", "inside_one_cell", "cut_rows", "cut_columns", "cut_both",
                         "header_lines", "header_inside")}
    in_table = total["lines"] - total["outside_table"]
    body = in_table - total["header_lines"]
    times = [page.layout_ms for page in scored]
    return {"pages": len(pages), "refused": [f"{page.page}: {page.refused}" for page in pages if page.refused],
            **total, "lines_in_table": in_table,
            "inside_one_cell_share": round(total["inside_one_cell"] / in_table, 4) if in_table else None,
            "body_inside_one_cell_share": round((total["inside_one_cell"] - total["header_inside"]) / body, 4)
            if body else None,
            "preprocess_layout_ms_median": round(float(np.median(times)), 1) if times else None}


def selected_pages(gt_dir: Path, split: str | None, corpus: str | None) -> list:
    """The ground-truth pages of `gt_dir`, only those of `split` in the shipped model's split when asked."""
    from pipeline.htr.data import find_pages
    from pipeline.recognize.crnn import MODELS_DIR

    pages = sorted(find_pages(gt_dir), key=lambda page: page.stem)
    if split:
        stems = json.loads((MODELS_DIR / "crnn.split.json").read_text(encoding="utf-8"))[split]
        wanted = {stem for name, names in stems.items() if corpus in (None, name) for stem in names}
        pages = [page for page in pages if page.stem in wanted]
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gt_dir", type=Path, help="Page images with ALTO/PAGE XML lines beside them.")
    parser.add_argument("--split", choices=("train", "val", "test"),
                        help="Only the pages of this split of the shipped model (models/crnn.split.json).")
    parser.add_argument("--corpus", help="With --split: only this corpus's pages of it.")
    args = parser.parse_args()
    from pipeline.errors import UsageError

    try:
        pages = selected_pages(args.gt_dir, args.split, args.corpus)
    except UsageError as error:
        sys.exit(f"layout_lines: {error}")
    if not pages:
        sys.exit(f"layout_lines: no ground-truth pages selected in {args.gt_dir}")
    scores = []
    for page in pages:
        scores.append(score_page(page))
        print(scores[-1].model_dump_json(), file=sys.stderr, flush=True)
    print(json.dumps({"gt_dir": str(args.gt_dir), "split": args.split, "corpus": args.corpus,
                      **summarise(scores)}))


if __name__ == "__main__":
    main()
