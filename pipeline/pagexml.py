"""Table ground truth: PAGE XML 2019 reading/writing and the synthetic pages' JSON ground truth.

PAGE XML layout (Transkribus-style tables, as the evaluator expects):

    PcGts/Page[@imageFilename,@imageWidth,@imageHeight]
      /TableRegion[@id,@orientation,@custom="structure {headerRows:N;}"]/Coords[@points]
        /TableCell[@id,@row,@col,@rowSpan,@colSpan]/Coords[@points]
          /TextLine[@id]/Coords[@points], Baseline[@points], TextEquiv/Unicode

Rows count from the top of the table: rows 0..header_rows-1 hold the printed headers, data
rows follow. `orientation` is PAGE's: the clockwise rotation in degrees that straightens the
region, which equals the page's `skew_deg` (content turned counter-clockwise by that angle).
The JSON ground truth (`PageGroundTruth`) carries the same cells plus typed values, field
keys, the grid and the rendering parameters; its data rows are numbered from 0 *without* the
header rows, like `pipeline.models.Cell.row`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from pipeline.errors import UsageError

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd"
JSON_SCHEMA = "census-synth-gt/1"

Point = tuple[int, int]


class GTCell(BaseModel):
    """One table cell of the PAGE XML (rows counted with the header rows)."""

    row: int = Field(ge=0)
    col: int = Field(ge=0)
    polygon: list[Point]  # cell outline in image pixels (4 corners for synthetic pages)
    text: str = ""  # literal text as written; "" for an empty cell
    line_polygon: list[Point] | None = None  # outline of the written text, when known
    baseline: list[Point] | None = None
    row_span: int = 1
    col_span: int = 1


class TableGroundTruth(BaseModel):
    """The table of one page image, as read from (or written to) PAGE XML."""

    image_filename: str
    width: int
    height: int
    header_rows: int = 1
    skew_deg: float = 0.0
    table_polygon: list[Point] = Field(default_factory=list)
    cells: list[GTCell]

    @property
    def n_rows(self) -> int:
        """Rows in the table, header rows included."""
        return max((cell.row + cell.row_span for cell in self.cells), default=0)

    @property
    def n_cols(self) -> int:
        return max((cell.col + cell.col_span for cell in self.cells), default=0)

    @property
    def data_rows(self) -> int:
        return max(0, self.n_rows - self.header_rows)

    def cell(self, row: int, col: int) -> GTCell:
        return next(cell for cell in self.cells if cell.row == row and cell.col == col)


class GridGT(BaseModel):
    """Rule positions: `*_bounds` in *unskewed* page pixels (apply `skew_matrix` to reach the
    image); `*_lines` the same rules as 2-point segments in image pixels, after skew."""

    row_bounds: list[float]  # n_rows + header_rows + 1 values, top of the table first
    col_bounds: list[float]
    row_lines: list[list[Point]] = Field(default_factory=list)
    col_lines: list[list[Point]] = Field(default_factory=list)


class ColumnGT(BaseModel):
    col: int
    field: str  # template field key
    header: str  # printed header text


class HeaderCellGT(BaseModel):
    row: int  # 0-based header row
    col: int
    text: str
    polygon: list[Point]


class DataCellGT(BaseModel):
    row: int  # 0-based data row (header rows excluded)
    col: int
    field: str
    text: str  # literal, ditto marks kept
    value: Any = None  # typed value a parser should produce (ditto resolved); None if empty
    ditto: bool = False
    polygon: list[Point]  # cell outline in image pixels, after skew
    line_polygon: list[Point] | None = None  # outline of the ink, after skew
    household_id: str | None = None


class RowGT(BaseModel):
    row: int
    household_id: str | None  # None for an unused (blank) row
    polygon: list[Point]


class PageGroundTruth(BaseModel):
    """JSON ground truth of one synthetic page (`<stem>.json` or `<stem>.p<k>.json`)."""

    schema_: str = Field(JSON_SCHEMA, alias="schema")
    image: str  # file name of the image holding the page
    page_index: int = 0  # page within a multi-page TIFF/PDF
    width: int
    height: int
    dpi: float
    template: str
    language: str
    register_year: int
    reference_date: dt.date  # ages are completed years at this date
    municipality: str
    seed: int
    skew_deg: float  # content turned counter-clockwise by this angle (cv2 convention)
    skew_matrix: list[list[float]]  # 2x3 affine: unskewed page pixel -> image pixel
    header_rows: int
    n_rows: int  # ruled data rows (some may be blank)
    n_cols: int
    grid: GridGT
    table_polygon: list[Point]
    columns: list[ColumnGT]
    header_cells: list[HeaderCellGT]
    cells: list[DataCellGT]
    rows: list[RowGT]
    render: dict[str, Any] = Field(default_factory=dict)  # font, noise, rule styles...

    model_config = {"populate_by_name": True}

    def cell(self, row: int, col: int) -> DataCellGT:
        return next(cell for cell in self.cells if cell.row == row and cell.col == col)


def to_table_groundtruth(page: PageGroundTruth) -> TableGroundTruth:
    """The PAGE XML view of a JSON ground truth (data rows shifted below the headers)."""
    headers = [GTCell(row=c.row, col=c.col, polygon=c.polygon, text=c.text) for c in page.header_cells]
    data = [GTCell(row=c.row + page.header_rows, col=c.col, polygon=c.polygon, text=c.text,
                   line_polygon=c.line_polygon if c.text else None) for c in page.cells]
    return TableGroundTruth(image_filename=page.image, width=page.width, height=page.height,
                            header_rows=page.header_rows, skew_deg=page.skew_deg,
                            table_polygon=page.table_polygon, cells=headers + data)


def _points(polygon: list[Point]) -> str:
    return " ".join(f"{x},{y}" for x, y in polygon)


def _parse_points(text: str) -> list[Point]:
    return [(round(float(x)), round(float(y))) for x, y in (pair.split(",") for pair in text.split())]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _add_text_line(parent: Any, cell: GTCell, cell_id: str) -> None:
    from lxml import etree

    line = etree.SubElement(parent, f"{{{PAGE_NS}}}TextLine", id=f"{cell_id}_l0")
    etree.SubElement(line, f"{{{PAGE_NS}}}Coords", points=_points(cell.line_polygon or cell.polygon))
    if cell.baseline:
        etree.SubElement(line, f"{{{PAGE_NS}}}Baseline", points=_points(cell.baseline))
    equiv = etree.SubElement(line, f"{{{PAGE_NS}}}TextEquiv")
    etree.SubElement(equiv, f"{{{PAGE_NS}}}Unicode").text = cell.text


def page_xml_bytes(table: TableGroundTruth, creator: str = "census") -> bytes:
    """Serialise a table ground truth as a PAGE 2019 document."""
    from lxml import etree

    root = etree.Element(f"{{{PAGE_NS}}}PcGts", nsmap={None: PAGE_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", SCHEMA_LOCATION)
    metadata = etree.SubElement(root, f"{{{PAGE_NS}}}Metadata")
    etree.SubElement(metadata, f"{{{PAGE_NS}}}Creator").text = creator
    etree.SubElement(metadata, f"{{{PAGE_NS}}}Created").text = _now()
    etree.SubElement(metadata, f"{{{PAGE_NS}}}LastChange").text = _now()
    page = etree.SubElement(root, f"{{{PAGE_NS}}}Page", imageFilename=table.image_filename,
                            imageWidth=str(table.width), imageHeight=str(table.height))
    region = etree.SubElement(page, f"{{{PAGE_NS}}}TableRegion", id="t0",
                              orientation=f"{table.skew_deg:.4f}",
                              custom=f"structure {{headerRows:{table.header_rows};}}")
    polygon = table.table_polygon or _hull_of_cells(table)
    etree.SubElement(region, f"{{{PAGE_NS}}}Coords", points=_points(polygon))
    for cell in sorted(table.cells, key=lambda c: (c.row, c.col)):
        cell_id = f"t0_r{cell.row}_c{cell.col}"
        element = etree.SubElement(region, f"{{{PAGE_NS}}}TableCell", id=cell_id, row=str(cell.row),
                                   col=str(cell.col), rowSpan=str(cell.row_span), colSpan=str(cell.col_span))
        etree.SubElement(element, f"{{{PAGE_NS}}}Coords", points=_points(cell.polygon))
        if cell.text:
            _add_text_line(element, cell, cell_id)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _hull_of_cells(table: TableGroundTruth) -> list[Point]:
    xs = [x for cell in table.cells for x, _ in cell.polygon]
    ys = [y for cell in table.cells for _, y in cell.polygon]
    return [(min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys))]


def write_page_xml(path: Path, table: TableGroundTruth, creator: str = "census") -> Path:
    """Write `table` as PAGE XML at `path` (atomically: temp file then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(page_xml_bytes(table, creator))
    tmp.replace(path)
    return path


def _child(element: Any, name: str) -> Any:
    return element.find(f"{{{PAGE_NS}}}{name}")


def _header_rows(region: Any) -> int:
    match = re.search(r"headerRows:\s*(\d+)", region.get("custom", ""))
    return int(match.group(1)) if match else 1


def _read_cell(element: Any) -> GTCell:
    line = _child(element, "TextLine")
    text, line_polygon, baseline = "", None, None
    if line is not None:
        unicode = line.find(f"{{{PAGE_NS}}}TextEquiv/{{{PAGE_NS}}}Unicode")
        text = unicode.text or "" if unicode is not None else ""
        line_polygon = _parse_points(_child(line, "Coords").get("points", ""))
        base = _child(line, "Baseline")
        baseline = _parse_points(base.get("points", "")) if base is not None else None
    return GTCell(row=int(element.get("row")), col=int(element.get("col")),
                  row_span=int(element.get("rowSpan", 1)), col_span=int(element.get("colSpan", 1)),
                  polygon=_parse_points(_child(element, "Coords").get("points", "")),
                  text=text, line_polygon=line_polygon, baseline=baseline)


def read_table_groundtruth(xml_path: Path) -> TableGroundTruth:
    """Read the (first) TableRegion of a PAGE XML file; UsageError if it is not one."""
    from lxml import etree

    try:
        root = etree.parse(str(xml_path)).getroot()
        page = _child(root, "Page")
        region = page.find(f".//{{{PAGE_NS}}}TableRegion") if page is not None else None
        if region is None:
            raise UsageError(f"{xml_path}: no PAGE 2019 Page/TableRegion")
        cells = [_read_cell(element) for element in region.iter(f"{{{PAGE_NS}}}TableCell")]
        coords = _child(region, "Coords")
        return TableGroundTruth(
            image_filename=page.get("imageFilename", ""), width=int(page.get("imageWidth")),
            height=int(page.get("imageHeight")), header_rows=_header_rows(region),
            skew_deg=float(region.get("orientation", 0.0)), cells=cells,
            table_polygon=_parse_points(coords.get("points", "")) if coords is not None else [])
    except (OSError, etree.XMLSyntaxError, TypeError, ValueError, ValidationError) as error:
        raise UsageError(f"{xml_path}: unreadable PAGE XML table ground truth: {error}") from error


def write_json_groundtruth(path: Path, page: PageGroundTruth) -> Path:
    """Write the JSON ground truth atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # one cell per line: compact, yet diffs and greps stay readable
    data = page.model_dump(mode="json", by_alias=True)
    tmp.write_text(_json_lines(data), encoding="utf-8")
    tmp.replace(path)
    return path


def _json_lines(data: dict[str, Any]) -> str:
    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n  ".join(dump(item) for item in value)
            parts.append(f"{dump(key)}:[\n  {items}\n]")
        else:
            parts.append(f"{dump(key)}:{dump(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def read_json_groundtruth(path: Path) -> PageGroundTruth:
    """Read a synthetic page's JSON ground truth; UsageError if missing or invalid."""
    try:
        return PageGroundTruth.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as error:
        raise UsageError(f"{path}: unreadable JSON ground truth: {error}") from error


def groundtruth_paths(image: Path, page_index: int | None = None) -> tuple[Path, Path]:
    """(PAGE XML, JSON) paths beside `image`: `<stem>.xml` for a single-page file (page_index
    None), `<stem>.p<k>.xml` for page k of a TIFF/PDF holding several pages."""
    image = Path(image)
    suffix = "" if page_index is None else f".p{page_index}"
    return image.with_name(f"{image.stem}{suffix}.xml"), image.with_name(f"{image.stem}{suffix}.json")
