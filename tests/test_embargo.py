"""Privacy embargo: the rule, and proof that nothing restricted leaks through any export
format, `census query`, search or the datasette browse view (copy, JSON API and SQL)."""

from __future__ import annotations

import datetime as dt
import json
import random
import socket
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.dataset import datagen, embargo
from pipeline.run import store
from pipeline.stages.templates import load_template

TODAY = dt.date(2026, 6, 1)
# Restricted sentinels: values that exist nowhere else in the generated data.
SENTINELS = [
    {
        "name": "Zebedeu Quixotescu i Wolfram",
        "birth_date": "1991-03-17",
        "age": None,
        "address": "carrer de Xyzzy Secret, 913",
    },
    {
        "name": "Yolanda Plughvart Mnemosine",
        "birth_date": None,
        "age": 3,  # no date, recent register rule
        "address": "passatge Qwertyuiop, 877",
    },
]
CORRECTED_NAME = "Zebedeu Quixotescu Corregit"


def _plant_sentinels(run_dir: Path) -> None:
    """Give two persons of the last page sentinel values (cells and persons), and correct one cell."""
    template = load_template("padro-catala-1930")
    rng = random.Random(5)
    lex = datagen.Lexicons.load("ca")
    members = datagen.page_members(rng, lex, template, 0)
    for member, sentinel in zip(members[-2:], SENTINELS):
        member.values.update(sentinel)
    result = datagen.page_result("5e171e1500000000-p0", members, template, rng)
    datagen.render_page_image(result, run_dir / "images" / f"{result.page.page_id}.jpg")
    with store.connect(run_dir) as connection:
        store.write_page(connection, result, template)
        name_cell = result.persons[-2].cell_ids["name"]
        connection.execute(
            "INSERT INTO corrections (cell_id, old_value, new_value, new_status, reviewer, corrected_at, "
            "source) "
            "VALUES (?, ?, ?, 'corrected', 'tester', '2026-01-01T00:00:00', 'test')",
            (name_cell, SENTINELS[0]["name"], CORRECTED_NAME),
        )
        store.reapply_corrections(connection, result.page.page_id)
        connection.commit()


def _secrets() -> list[str]:
    words = [CORRECTED_NAME, "Quixotescu", "Plughvart", "Xyzzy", "Qwertyuiop", "1991-03-17", "17/3/1991"]
    return words + [s["name"] for s in SENTINELS]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("embargo-run")
    datagen.generate_run(folder, pages=2, seed=3)
    (folder / embargo.CONFIG_NAME).write_text(f"years: 100\ntoday: {TODAY.isoformat()}\n", encoding="utf-8")
    _plant_sentinels(folder)
    return folder


def _assert_clean(text: str, where: str) -> None:
    for secret in _secrets():
        assert secret not in text, f"{secret!r} leaked through {where}"


# --- the rule ---------------------------------------------------------------------------------


def test_rule_restricts_recent_births_and_undated_persons_of_recent_registers():
    rule = embargo.EmbargoRule(today=TODAY)
    assert embargo.is_restricted("1991-03-17", 1930, rule)
    assert embargo.is_restricted("1926-06-01", 1930, rule)  # exactly 100 years before today
    assert not embargo.is_restricted("1926-05-31", 1930, rule)
    assert embargo.is_restricted(None, 1930, rule)  # register 96 years old, birth unknown
    assert not embargo.is_restricted(None, 1900, rule)
    assert not embargo.is_restricted("1880", 1930, rule)  # year-only dates
    assert embargo.is_restricted(None, None, rule)  # unknown register year: assume recent


def test_rule_is_read_from_the_run_config(run_dir: Path):
    rule = embargo.load_rule(run_dir)
    assert rule.today == TODAY and rule.years == 100
    assert embargo.load_rule(run_dir, years=50).years == 50
    bad = run_dir / "bad"
    bad.mkdir(exist_ok=True)
    (bad / embargo.CONFIG_NAME).write_text("years: -3\n", encoding="utf-8")
    from pipeline.errors import UsageError

    with pytest.raises(UsageError):
        embargo.load_rule(bad)


# --- no leaks ---------------------------------------------------------------------------------


def test_no_export_format_leaks_restricted_values(run_dir: Path, tmp_path: Path):
    from pipeline.dataset.export import export

    report = export(run_dir, "all", tmp_path / "all")
    assert report.restricted >= 2 and report.masked_values > 0 and report.masked_cells > 0
    for path in (tmp_path / "all").rglob("*"):
        if path.suffix in {".csv", ".jsonl", ".xml", ".json", ".md"}:
            _assert_clean(path.read_text(encoding="utf-8"), str(path))
        elif path.suffix == ".parquet":
            _assert_clean(json.dumps(pq.read_table(path).to_pylist(), default=str), str(path))
    masked_report = json.loads((tmp_path / "all" / embargo.REPORT_NAME).read_text(encoding="utf-8"))
    assert masked_report["restricted"] == report.restricted and "name" in masked_report["masked_fields"]


def test_redacted_page_images_blank_the_restricted_cells(run_dir: Path, tmp_path: Path):
    import numpy as np
    from PIL import Image

    from pipeline.dataset.export import export

    export(run_dir, "pagexml", tmp_path / "page")
    page_id = "5e171e1500000000-p0"
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        x0, y0, x1, y1 = connection.execute(
            "SELECT x0, y0, x1, y1 FROM cells WHERE text = ?", (CORRECTED_NAME,)
        ).fetchone()
    original = np.asarray(Image.open(run_dir / "images" / f"{page_id}.jpg").convert("L"))[y0:y1, x0:x1]
    redacted = np.asarray(Image.open(tmp_path / "page" / f"{page_id}.jpg").convert("L"))[y0:y1, x0:x1]
    assert original.min() < 100  # there was ink
    assert redacted.min() > 200  # and now there is none


def test_training_export_drops_restricted_cells_unless_asked(run_dir: Path, tmp_path: Path):
    from pipeline.dataset.export import export

    masked = export(run_dir, "training", tmp_path / "masked")
    assert masked.masked_cells == 1  # the corrected name of a restricted person
    _assert_clean((tmp_path / "masked" / "manifest.jsonl").read_text(encoding="utf-8"), "training manifest")
    full = export(run_dir, "training", tmp_path / "full", include_restricted=True)
    assert CORRECTED_NAME in (tmp_path / "full" / "manifest.jsonl").read_text(encoding="utf-8")
    assert full.cells == masked.cells + 1


def test_include_restricted_exports_everything(run_dir: Path, tmp_path: Path):
    from pipeline.dataset.export import export

    export(run_dir, "jsonl", tmp_path / "full", include_restricted=True)
    text = (tmp_path / "full" / "persons.jsonl").read_text(encoding="utf-8")
    assert CORRECTED_NAME in text and "Plughvart" in text and "1991-03-17" in text


def test_query_cannot_reach_restricted_values(run_dir: Path):
    from pipeline.dataset.query import run_query

    for table in ("persons", "households", "cells", "corrections", "pages"):
        result = run_query(run_dir, f"SELECT * FROM {table}")
        _assert_clean(json.dumps(result.rows, default=str), f"query {table}")
    full = run_query(
        run_dir,
        "SELECT name FROM persons WHERE name = ?".replace("?", f"'{CORRECTED_NAME}'"),
        include_restricted=True,
    )
    assert full.rows == [[CORRECTED_NAME]]  # the reviewer's correction is the current value


def test_search_hides_restricted_persons(run_dir: Path):
    from pipeline.dataset.search import SearchQuery, search

    for name in (CORRECTED_NAME, SENTINELS[1]["name"], "Quixotescu", "Plughvart Mnemosine"):
        hits = search(run_dir, SearchQuery(text=name, limit=20), crops=True)
        _assert_clean(json.dumps([hit.model_dump() for hit in hits]), f"search {name!r}")
    shown = search(run_dir, SearchQuery(text=CORRECTED_NAME, include_restricted=True), crops=False)
    assert shown and shown[0].name == CORRECTED_NAME


def test_browse_copy_holds_no_restricted_values(run_dir: Path):
    from pipeline.dataset.browse import build_browse_db

    path = build_browse_db(run_dir)
    with sqlite3.connect(path) as connection:
        dump = "\n".join(connection.iterdump())
    _assert_clean(dump, "the browse database")
    assert "Zebedeu" not in dump


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.server
def test_datasette_pages_and_sql_do_not_leak(run_dir: Path):
    from pipeline.dataset.browse import DB_NAME, datasette_command

    port = _free_port()
    server = subprocess.Popen(
        datasette_command(run_dir, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base)
        sql = urllib.parse.quote("select group_concat(name, '|') || group_concat(address, '|') from persons")
        for url in (
            f"/{DB_NAME}/persons.json?_shape=array&_size=max",
            f"/{DB_NAME}/households.json?_size=max",
            f"/{DB_NAME}/persons?_facet=sex",
            f"/{DB_NAME}.json?sql=select+*+from+persons",
            f"/{DB_NAME}.json?sql={sql}",
            f"/{DB_NAME}/persons_fts.json?_size=max",
        ):
            with urllib.request.urlopen(base + url, timeout=30) as response:
                _assert_clean(response.read().decode("utf-8", "replace"), url)
        for term in ("Quixotescu", "Plughvart", "Xyzzy"):  # full-text search finds nobody
            with urllib.request.urlopen(
                f"{base}/{DB_NAME}/persons.json?_shape=array&_search={term}", timeout=30
            ) as response:
                assert json.loads(response.read()) == []
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(base: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/-/versions.json", timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"datasette did not start at {base}")
