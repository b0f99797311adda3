"""PAGE XML 2019 table ground truth: structure of what we write, round trips, JSON ground truth."""

import re
from pathlib import Path

import pytest
from lxml import etree

from pipeline.errors import UsageError
from pipeline.pagexml import (PAGE_NS, GTCell, TableGroundTruth, groundtruth_paths, read_json_groundtruth,
                              read_table_groundtruth, to_table_groundtruth, write_json_groundtruth,
                              write_page_xml)
from pipeline.synth import render_page
from pipeline.stages.templates import load_template

NS = {"p": PAGE_NS}
POINTS = re.compile(r"^-?\d+,-?\d+( -?\d+,-?\d+)+$")


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _table() -> TableGroundTruth:
    cells = [GTCell(row=0, col=0, polygon=_rect(10, 10, 200, 60), text="Nom i cognoms"),
             GTCell(row=0, col=1, polygon=_rect(200, 10, 300, 60), text="Domicili"),
             GTCell(row=1, col=0, polygon=_rect(10, 60, 200, 100), text="Marcel·lí Puig i Serra",
                    line_polygon=_rect(15, 65, 180, 95), baseline=[(15, 90), (180, 90)]),
             GTCell(row=1, col=1, polygon=_rect(200, 60, 300, 100), text='〃 <&> "'),
             GTCell(row=2, col=0, polygon=_rect(10, 100, 200, 140), text=""),
             GTCell(row=2, col=1, polygon=_rect(200, 100, 300, 140), text="ídem")]
    return TableGroundTruth(image_filename="page.png", width=400, height=200, header_rows=1, skew_deg=-1.25,
                            table_polygon=_rect(10, 10, 300, 140), cells=cells)


def test_round_trip(tmp_path: Path) -> None:
    table = _table()
    path = write_page_xml(tmp_path / "page.xml", table)
    back = read_table_groundtruth(path)
    # PAGE needs Coords on every TextLine: a line without its own outline gets its cell's
    expected = table.model_copy(deep=True)
    for cell in expected.cells:
        if cell.text and cell.line_polygon is None:
            cell.line_polygon = cell.polygon
    assert back.model_dump() == expected.model_dump()
    assert (back.n_rows, back.n_cols, back.data_rows) == (3, 2, 2)
    assert back.cell(1, 0).text == "Marcel·lí Puig i Serra"


def test_xml_structure(tmp_path: Path) -> None:
    root = etree.parse(str(write_page_xml(tmp_path / "page.xml", _table()))).getroot()
    assert root.tag == f"{{{PAGE_NS}}}PcGts"
    assert root.find("p:Metadata/p:Creator", NS) is not None
    page = root.find("p:Page", NS)
    assert (page.get("imageFilename"), page.get("imageWidth"), page.get("imageHeight")) == ("page.png", "400", "200")
    regions = page.findall("p:TableRegion", NS)
    assert len(regions) == 1 and regions[0].get("id")
    assert float(regions[0].get("orientation")) == -1.25
    assert POINTS.match(regions[0].find("p:Coords", NS).get("points"))
    cells = regions[0].findall("p:TableCell", NS)
    assert len(cells) == 6
    ids = set()
    for cell in cells:
        assert {"id", "row", "col", "rowSpan", "colSpan"} <= set(cell.attrib)
        ids.add(cell.get("id"))
        assert POINTS.match(cell.find("p:Coords", NS).get("points"))
        lines = cell.findall("p:TextLine", NS)
        if (cell.get("row"), cell.get("col")) == ("2", "0"):
            assert lines == []  # empty cell: no text line
            continue
        assert len(lines) == 1 and POINTS.match(lines[0].find("p:Coords", NS).get("points"))
        assert lines[0].find("p:TextEquiv/p:Unicode", NS).text
    assert len(ids) == 6


@pytest.mark.parametrize("content", [b"", b"not xml at all", b"<root/>",
                                     b'<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">'
                                     b'<Page imageFilename="a" imageWidth="1" imageHeight="1"/></PcGts>'])
def test_unreadable_xml_is_usage_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(content)
    with pytest.raises(UsageError):
        read_table_groundtruth(path)


def test_header_rows_default_when_custom_missing(tmp_path: Path) -> None:
    path = write_page_xml(tmp_path / "page.xml", _table())
    path.write_text(path.read_text(encoding="utf-8").replace('custom="structure {headerRows:1;}"', ""),
                    encoding="utf-8")
    assert read_table_groundtruth(path).header_rows == 1


def test_synthetic_page_json_and_xml_agree(tmp_path: Path) -> None:
    _, truth = render_page(load_template("padro-catala-1930"), seed=3, image_name="p.png")
    json_path = write_json_groundtruth(tmp_path / "p.json", truth)
    assert read_json_groundtruth(json_path).model_dump() == truth.model_dump()
    table = read_table_groundtruth(write_page_xml(tmp_path / "p.xml", to_table_groundtruth(truth)))
    assert table.header_rows == truth.header_rows == 1
    assert table.data_rows == truth.n_rows and table.n_cols == truth.n_cols
    for cell in truth.cells:
        xml_cell = table.cell(cell.row + truth.header_rows, cell.col)
        assert xml_cell.text == cell.text
        assert xml_cell.polygon == cell.polygon
    assert [table.cell(0, c).text for c in range(table.n_cols)] == [c.header for c in truth.columns]


def test_invalid_json_is_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"image": "x.png"}', encoding="utf-8")
    with pytest.raises(UsageError):
        read_json_groundtruth(path)
    with pytest.raises(UsageError):
        read_json_groundtruth(tmp_path / "missing.json")


def test_groundtruth_paths() -> None:
    assert groundtruth_paths(Path("/d/a.png")) == (Path("/d/a.xml"), Path("/d/a.json"))
    assert groundtruth_paths(Path("/d/a.tif"), 1) == (Path("/d/a.p1.xml"), Path("/d/a.p1.json"))
