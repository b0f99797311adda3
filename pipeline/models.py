"""Typed, JSON-serialisable results passed from one stage to the next (see DESIGN.md).

Coordinates stored in results are always in *original page* pixels: the page as ingested
(EXIF orientation applied, before deskew or crop). `PreprocessResult.to_original` maps
processed-image pixels back to those.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

CellStatus = Literal["accepted", "needs_review", "corrected", "empty", "illegible"]
PageStatus = Literal["done", "failed"]


class BBox(BaseModel):
    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def around(cls, points) -> BBox:
        """The smallest box holding every (x, y) of `points` (a polygon)."""
        xs, ys = [int(x) for x, _ in points], [int(y) for _, y in points]
        return cls(x0=min(xs), y0=min(ys), x1=max(xs), y1=max(ys))

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


class PageInfo(BaseModel):
    """One page of one input file, as ingested."""

    page_id: str  # "<sha256 of file, 16 hex>-p<page_index>"
    source: str  # absolute path of the input file
    page_index: int  # 0-based page within a multi-page TIFF or PDF
    width: int
    height: int
    dpi: float | None = None


class PreprocessResult(BaseModel):
    skew_deg: float  # measured skew; the page was rotated by -skew_deg
    crop: BBox  # table area kept, in deskewed-page pixels
    to_original: list[list[float]]  # 2x3 affine: processed pixel (x, y, 1) -> original page pixel
    binarized: bool = False
    original_size: tuple[int, int] | None = None  # (width, height) of the original page: clips to_original


class HeaderGroup(BaseModel):
    """A group title printed over several columns of a two-level header: columns `first`..`last`
    (inclusive) share the header band from its top down to `bottom`, where their sub-column rules start."""

    first: int
    last: int
    bottom: int  # processed-image pixels


class CellSpan(BaseModel):
    """A data row's cell written across the rules between columns `first`..`last` (inclusive): one cell,
    read whole into column `col` (the one holding most of the writing); the others stay empty."""

    row: int  # 0-based data row (header rows excluded)
    first: int
    last: int
    col: int


class Grid(BaseModel):
    """Ruled-table grid in processed-image pixels: n+1 boundaries for n rows / columns."""

    row_bounds: list[int]
    col_bounds: list[int]
    header_rows: int = 1  # rows at the top holding printed headers
    rows_from_text: bool = False  # True when horizontal rules were missing
    header_groups: list[HeaderGroup] = Field(default_factory=list)
    spans: list[CellSpan] = Field(default_factory=list)
    index_row_top: int | None = None  # where a ruled-off row of column numbers under the headings starts


class ColumnMapping(BaseModel):
    """Which template field each grid column holds, and how that was decided."""

    # column index -> template field key, or an extra column's own key (None: unmapped, in pages
    # mapped before every printed column was kept)
    fields: dict[int, str | None]
    headers: dict[int, str] = Field(default_factory=dict)  # column index -> printed header read
    # "extra": a column the template does not know, kept as text under its own key
    # (pipeline.stages.columns.extra_key)
    method: dict[int, Literal["header", "position", "extra"]] = Field(default_factory=dict)
    scores: dict[int, float] = Field(default_factory=dict)


class Reading(BaseModel):
    """What a recognition engine read in one crop."""

    text: str
    confidence: float  # calibrated probability that `text` is exactly right
    char_confidences: list[float] = Field(default_factory=list)
    engine: str
    model: str = ""


class Cell(BaseModel):
    cell_id: str  # "<page_id>:r<row>:c<col>"
    page_id: str
    row: int  # 0-based data row (header rows excluded)
    col: int
    field: str | None
    text: str  # literal text as written (ditto marks kept)
    value: Any = None  # typed, normalised value (ditto resolved, lexicon snapped)
    value_from: str | None = None  # a ditto's value: id of the written cell above it was copied from
    confidence: float
    status: CellStatus
    reasons: list[str] = Field(default_factory=list)
    bbox: BBox  # original page pixels
    polygon: list[tuple[int, int]] = Field(default_factory=list)  # original page pixels
    engine: str = ""
    model: str = ""


class Person(BaseModel):
    """One register row, typed by the template's fields."""

    page_id: str
    row: int
    values: dict[str, Any]
    cell_ids: dict[str, str]  # field key -> cell id (provenance)
    household_id: str | None = None
    row_bbox: BBox | None = None


class PageResult(BaseModel):
    """Everything a page produced; written atomically as RUN_DIR/pages/<page_id>.json."""

    page: PageInfo
    template: str
    status: PageStatus = "done"
    error: str | None = None
    preprocess: PreprocessResult | None = None
    grid: Grid | None = None
    columns: ColumnMapping | None = None
    cells: list[Cell] = Field(default_factory=list)
    persons: list[Person] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)  # stage -> seconds


class Failure(BaseModel):
    """One line of RUN_DIR/failures.jsonl."""

    source: str
    page_index: int | None = None
    page_id: str | None = None
    reason: str  # short machine-readable reason, e.g. "empty-file", "decompression-bomb"
    detail: str = ""
    attempts: int = 1
