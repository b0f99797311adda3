"""Embargo, route by route, on a page where restricted persons sit between unrestricted ones
(a copy of the shipped template with a late register_year): every image a run gives out (row
crops in browse and search, review crops, report thumbnails, `census show`, exported page
images) shows blank paper where a restricted person's masked cells are, and no table (query,
csv/jsonl/parquet exports, the browse copy) gives back their names, dates or household address.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.dataset import dataset, datagen, embargo
from pipeline.run import store
from pipeline.stages.templates import TEMPLATES_DIR

PAGE = "0000001f00000000-p0"
# Register of 1995 read in 2026 with a 35-year embargo: persons born after 1991-06-01, and the
# undated, are restricted; they live in households with unrestricted persons (seed 31).
EMBARGO = "years: 35\ntoday: 2026-06-01\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("embargo-routes")
    template = folder / "late.yaml"
    shipped = (TEMPLATES_DIR / "padro-catala-1930.yaml").read_text(encoding="utf-8")
    template.write_text(shipped.replace("register_year: 1930", "register_year: 1995"), encoding="utf-8")
    run = folder / "run"
    datagen.generate_run(run, pages=1, seed=31, template_name=str(template))
    (run / embargo.CONFIG_NAME).write_text(EMBARGO, encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def people(run_dir: Path) -> list[dict]:
    return dataset.load(run_dir, include_restricted=True, write_report=False).persons.to_pylist()


@pytest.fixture(scope="module")
def hidden(run_dir: Path, people: list[dict]) -> dict[int, list[embargo.Box]]:
    """Masked cells of the restricted rows, by row (the boxes that must show blank paper)."""
    rows = {person["row"] for person in people if person["restricted"]}
    return dataset.page_hidden_boxes(run_dir, PAGE, rows)


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.int16)


def _original(run_dir: Path) -> np.ndarray:
    return _grey(run_dir / "images" / f"{PAGE}.jpg")


def _size(run_dir: Path) -> tuple[int, int]:
    height, width = _original(run_dir).shape
    return width, height


def _region(image: np.ndarray, box: embargo.Box, origin=(0, 0), scale=1.0, margin=2) -> np.ndarray:
    """The pixels of `box` (page pixels) in `image` (the page cut at origin, scaled), less a margin."""
    x0, y0, x1, y1 = ((value - origin[index % 2]) * scale for index, value in enumerate(box))
    height, width = image.shape[:2]
    top, bottom = max(0, int(np.ceil(y0)) + margin), min(height, int(np.floor(y1)) - margin)
    left, right = max(0, int(np.ceil(x0)) + margin), min(width, int(np.floor(x1)) - margin)
    return image[top:bottom, left:right] if bottom > top and right > left else image[0:0, 0:0]


def _ink(region: np.ndarray, paper: float) -> int:
    """Pixels clearly darker than paper: handwriting (JPEG noise stays well under 60 levels)."""
    return int((region < paper - 60).sum()) if region.size else 0


def _paper(image: np.ndarray) -> float:
    return float(np.percentile(image, embargo.PAPER_PERCENTILE))


def _assert_blank(image: np.ndarray, boxes, where: str, origin=(0, 0), scale=1.0, margin=2) -> int:
    """Every box shows blank paper in `image`; returns how many boxes reached into it."""
    paper, reached = _paper(image), 0
    for box in boxes:
        region = _region(image, box, origin, scale, margin)
        reached += bool(region.size)
        assert _ink(region, paper) == 0, f"restricted cell {box} shows ink in {where}"
    return reached


def _all(hidden: dict[int, list[embargo.Box]], but: int | None = None) -> list[embargo.Box]:
    return [box for row, boxes in hidden.items() if row != but for box in boxes]


def _neighbour(people: list[dict]) -> dict:
    """An unrestricted person whose next row is restricted."""
    by_row = {person["row"]: person for person in people}
    return next(
        person
        for person in people
        if not person["restricted"] and by_row.get(person["row"] + 1, {}).get("restricted")
    )


def test_the_page_mixes_restricted_and_unrestricted_households(people: list[dict], hidden):
    restricted = {person["row"] for person in people if person["restricted"]}
    assert 3 <= len(restricted) < len(people) - 10
    mixed = {p["household_id"] for p in people if p["restricted"]} & {
        p["household_id"] for p in people if not p["restricted"]
    }
    assert len(mixed) >= 2 and set(hidden) == restricted


# --- images -----------------------------------------------------------------------------------


def test_exported_page_images_blank_every_masked_cell(run_dir: Path, hidden, tmp_path: Path):
    from pipeline.dataset.export import export

    export(run_dir, "pagexml", tmp_path / "page")
    original, redacted = _original(run_dir), _grey(tmp_path / "page" / f"{PAGE}.jpg")
    paper = _paper(original)
    assert sum(_ink(_region(original, box), paper) > 0 for box in _all(hidden)) >= 10  # there was ink
    assert _assert_blank(redacted, _all(hidden), "the exported page") == len(_all(hidden))
    # unrestricted rows keep their handwriting
    assert _ink(redacted, paper) > 0.8 * _ink(original, paper) - sum(
        _ink(_region(original, box, margin=0), paper) for box in _all(hidden)
    )


def test_row_crop_is_the_row_inset_from_its_rules_with_restricted_cells_blank(run_dir: Path, people, hidden):
    from pipeline.dataset.search import crop_image

    person = _neighbour(people)
    row_box = (person["x0"], person["y0"], person["x1"], person["y1"])
    below = next(p for p in people if p["row"] == person["row"] + 1)
    # the row crop never reaches the row below (nor its rules)
    path = crop_image(run_dir, PAGE, row_box, "t-row", [below["row"]])
    crop = _grey(path)
    x0, y0, x1, y1 = embargo.row_crop_box(row_box, *_size(run_dir))
    assert crop.shape == (y1 - y0, x1 - x0) and y0 > row_box[1] and y1 < row_box[3] <= below["y0"] + 1
    # a crop taking in both rows (as a skewed page's row box does) blanks the restricted one
    both = (row_box[0], row_box[1], row_box[2], below["y1"])
    crop = _grey(crop_image(run_dir, PAGE, both, "t-both", [below["row"]]))
    origin = embargo.row_crop_box(both, *_size(run_dir))[:2]
    original = _original(run_dir)
    paper = _paper(original)
    assert any(_ink(_region(original, box), paper) for box in hidden[below["row"]])
    assert _assert_blank(crop, hidden[below["row"]], "a two-row crop", origin=origin) == len(hidden[below["row"]])
    assert _ink(crop, _paper(crop)) > 0  # the unrestricted row is still there


def test_browse_crop_route_shows_only_the_row(run_dir: Path, people, hidden):
    from datasette.app import Datasette

    from pipeline.dataset.browse import PLUGINS_DIR, build_browse_db, metadata

    database = build_browse_db(run_dir)
    app = Datasette([str(database)], metadata=metadata(run_dir), plugins_dir=str(PLUGINS_DIR))

    async def get(path: str):
        return await app.client.get(path)

    person = _neighbour(people)
    response = asyncio.run(get(f"/-/crop/{person['person_id']}"))
    assert response.status_code == 200
    crop = np.asarray(Image.open(__import__("io").BytesIO(response.content)).convert("L"), dtype=np.int16)
    row_box = (person["x0"], person["y0"], person["x1"], person["y1"])
    x0, y0, x1, y1 = embargo.row_crop_box(row_box, *_size(run_dir))
    assert crop.shape == (y1 - y0, x1 - x0)
    _assert_blank(crop, _all(hidden), "the browse crop", origin=(x0, y0))
    restricted = next(p for p in people if p["restricted"])
    assert asyncio.run(get(f"/-/crop/{restricted['person_id']}")).status_code == 404


def test_search_crops_show_the_name_cell_only(run_dir: Path, people, hidden):
    from pipeline.dataset.search import SearchQuery, search

    person = _neighbour(people)
    hits = search(run_dir, SearchQuery(text=person["name"], limit=5), crops=True)
    hit = next(hit for hit in hits if hit.person_id == person["person_id"])
    crop = _grey(Path(hit.crop))
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        cell = connection.execute(
            "SELECT x0, y0, x1, y1 FROM cells WHERE page_id = ? AND row = ? AND field = 'name'",
            (PAGE, person["row"]),
        ).fetchone()
    x0, y0, x1, y1 = embargo.row_crop_box(tuple(cell), *_size(run_dir))
    assert crop.shape == (y1 - y0, x1 - x0) and y1 < person["y1"]
    for hit in hits:
        _assert_blank(_grey(Path(hit.crop)), _all(hidden), f"search crop {hit.crop}")


def test_review_crops_blank_other_restricted_rows(run_dir: Path, people, hidden):
    from review import crops
    from review.push import row_boxes

    person = _neighbour(people)
    restricted_row = person["row"] + 1
    with store.connect(run_dir, readonly=True) as connection:
        cells = [
            dict(row)
            for row in connection.execute(
                "SELECT cell_id, page_id, row, x0, y0, x1, y1 FROM cells WHERE page_id = ? AND row IN (?, ?)",
                (PAGE, person["row"], restricted_row),
            )
        ]
        rows = row_boxes(connection, {PAGE})
    persons = dataset.load(run_dir, include_restricted=True, write_report=False).persons
    written = crops.write_cell_images(run_dir, cells, rows, embargo.restricted_rows(persons))
    assert written == {cell["cell_id"] for cell in cells}
    original = _original(run_dir)
    reached = 0
    for cell in cells:
        box = (cell["x0"], cell["y0"], cell["x1"], cell["y1"])
        origin = crops.padded(box, original.shape, 0.2, 6)[:2]
        image = _grey(crops.crop_path(run_dir, cell["cell_id"]))
        others = _all(hidden, but=cell["row"])
        reached += _assert_blank(image, others, f"review crop {cell['cell_id']}", origin=origin, margin=1)
    strip_origin = crops.padded(rows[(PAGE, person["row"])], original.shape, 0.15, 4)[:2]
    strip = _grey(crops.row_strip_path(run_dir, PAGE, person["row"]))
    reached += _assert_blank(strip, _all(hidden, but=person["row"]), "review row strip", origin=strip_origin, margin=1)
    assert reached > 0  # the padded crops do reach into the restricted row
    # the reviewer still sees the restricted person's own cell
    own = next(c for c in cells if c["row"] == restricted_row and (c["x0"], c["y0"], c["x1"], c["y1"]) in hidden[restricted_row]
               and _ink(_region(original, (c["x0"], c["y0"], c["x1"], c["y1"])), _paper(original)))
    assert _ink(_grey(crops.crop_path(run_dir, own["cell_id"])), _paper(original)) > 0


def _flat(image: np.ndarray, boxes, scale: float, margin: int) -> list[int]:
    """Spread of grey levels inside each box: 0 on blank (tinted) paper, large over handwriting."""
    return [int(np.ptp(region)) for box in boxes if (region := _region(image, box, scale=scale, margin=margin)).size]


def test_report_thumbnails_and_census_show_paint_over_restricted_cells(run_dir: Path, hidden, tmp_path: Path):
    import cv2

    from pipeline.run.report import THUMBNAIL_WIDTH, render_overlay, write_overlay, write_report

    scale, boxes = THUMBNAIL_WIDTH / _original(run_dir).shape[1], _all(hidden)

    def grey(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.int16)

    masked = render_overlay(run_dir, PAGE, width=THUMBNAIL_WIDTH, restricted_rows=set(hidden))
    unmasked = render_overlay(run_dir, PAGE, width=THUMBNAIL_WIDTH)
    assert max(_flat(grey(masked), boxes, scale, 2)) <= 3
    assert sum(spread > 20 for spread in _flat(grey(unmasked), boxes, scale, 2)) >= 10
    # the report embeds exactly the masked drawing
    html = write_report(run_dir).read_text(encoding="utf-8")
    uri = re.search(rf"alt='page {PAGE}' src='data:image/jpeg;base64,([^']+)'", html).group(1)
    ok, encoded = cv2.imencode(".jpg", masked, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok and base64.b64decode(uri) == encoded.tobytes()
    # census show: the full-size overlay (PNG), masked unless --include-restricted
    full = _grey(write_overlay(run_dir, PAGE, tmp_path / "show.png"))
    assert max(_flat(full, boxes, 1.0, 4)) <= 3
    shown = _grey(write_overlay(run_dir, PAGE, tmp_path / "full.png", include_restricted=True))
    assert sum(spread > 60 for spread in _flat(shown, boxes, 1.0, 4)) >= 10


# --- tables -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secrets(run_dir: Path, people: list[dict]) -> list[str]:
    """Restricted persons' names and dates (values and cell texts) that no unrestricted person has."""
    restricted = {person["row"] for person in people if person["restricted"]}
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        cells = connection.execute("SELECT row, field, text FROM cells WHERE text != ''").fetchall()
    shown = {text for row, _, text in cells if row not in restricted}
    shown |= {str(p[key]) for p in people if not p["restricted"] for key in ("name", "birth_date") if p[key]}
    found = {text for row, field, text in cells if row in restricted and field in {"name", "birth_date"}}
    found |= {str(p[key]) for p in people if p["restricted"] for key in ("name", "birth_date") if p[key]}
    found = {text for text in found - shown if len(text) >= 4}
    assert len(found) >= 6
    return sorted(found)


def _check_households(rows: list[dict], where: str) -> None:
    mixed = [row for row in rows if int(row["restricted_members"]) > 0]
    clear = [row for row in rows if int(row["restricted_members"]) == 0]
    assert mixed and clear, where
    assert all(row["address"] in (None, "") for row in mixed), f"a restricted member's address in {where}"
    assert all(row["address"] for row in clear), f"unrestricted households lost their address in {where}"


def _assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked through {where}"


def test_query_households_withhold_the_address_of_restricted_members(run_dir: Path, secrets):
    from pipeline.dataset.query import run_query

    result = run_query(run_dir, "SELECT * FROM households")
    _check_households([dict(zip(result.columns, row)) for row in result.rows], "census query")
    for table in ("persons", "households", "cells", "corrections"):
        _assert_clean(json.dumps(run_query(run_dir, f"SELECT * FROM {table}").rows, default=str), secrets, table)
    full = run_query(run_dir, "SELECT count(*) FROM households WHERE address IS NULL", include_restricted=True)
    assert full.rows == [[0]]


def test_exports_withhold_the_address_of_restricted_members(run_dir: Path, secrets, tmp_path: Path):
    from pipeline.dataset.export import export

    export(run_dir, "all", tmp_path / "all")
    root = tmp_path / "all"
    jsonl = [json.loads(line) for line in (root / "jsonl" / "households.jsonl").read_text().splitlines()]
    _check_households(jsonl, "households.jsonl")
    with next((root / "csv" / "households").rglob("*.csv")).open(encoding="utf-8") as handle:
        _check_households(list(csv.DictReader(handle)), "households csv")
    _check_households(pq.read_table(next((root / "parquet" / "households").rglob("*.parquet"))).to_pylist(), "parquet")
    for path in root.rglob("*"):
        if path.suffix in {".csv", ".jsonl", ".xml", ".json", ".md"}:
            _assert_clean(path.read_text(encoding="utf-8"), secrets, str(path))
        elif path.suffix == ".parquet":
            _assert_clean(json.dumps(pq.read_table(path).to_pylist(), default=str), secrets, str(path))
    book = json.loads((root / "codebook.json").read_text(encoding="utf-8"))
    address = next(entry for entry in book["households"] if entry["column"] == "address")
    assert "any member is restricted" in address["description"]


def test_browse_households_withhold_the_address_of_restricted_members(run_dir: Path, secrets):
    from pipeline.dataset.browse import build_browse_db

    with sqlite3.connect(build_browse_db(run_dir)) as connection:
        connection.row_factory = sqlite3.Row
        _check_households([dict(row) for row in connection.execute("SELECT * FROM households")], "browse")
        _assert_clean("\n".join(connection.iterdump()), secrets, "the browse database")
