"""The notebook API (pipeline.notebook): every DataFrame equals what `census query`, `census
export` and `census search` give on the same run, restricted persons stay masked unless asked,
and the example in docs/notebook.md runs as written."""

from __future__ import annotations

import json
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from pipeline import open_run
from pipeline.dataset import datagen, embargo
from pipeline.errors import UsageError
from pipeline.dataset.export import export
from pipeline.notebook import Run
from pipeline.dataset.query import run_query
from tests.test_embargo import CORRECTED_NAME, TODAY, _assert_clean, _plant_sentinels
from tests.test_search import plant_persons

DOC = Path(__file__).resolve().parent.parent / "docs" / "notebook.md"
DATE_FORMATS = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/samples (the doc's path) under a temporary folder: generated pages, the embargo
    test's restricted sentinels, the search test's planted persons (Josep Puig i Serra, 1885)."""
    folder = tmp_path_factory.mktemp("notebook") / "runs" / "samples"
    datagen.generate_run(folder, pages=2, seed=3)
    (folder / embargo.CONFIG_NAME).write_text(f"years: 100\ntoday: {TODAY.isoformat()}\n", encoding="utf-8")
    _plant_sentinels(folder)
    plant_persons(folder)
    return folder


@pytest.fixture(scope="module")
def run(run_dir: Path) -> Run:
    return open_run(run_dir)


def _records(frame: pd.DataFrame) -> list[dict]:
    """The frame as plain records: dates back to the ISO text written, categories as text, NA as None."""
    frame = frame.copy()
    for precision in [column for column in frame.columns if column.endswith("_precision")]:
        field = precision.removesuffix("_precision")
        frame[field] = [
            None if pd.isna(date) else date.strftime(DATE_FORMATS[kind])
            for date, kind in zip(frame[field], frame[precision])
        ]
        frame = frame.drop(columns=precision)
    frame = frame.astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("include_restricted", [False, True])
def test_persons_and_households_equal_the_export(
    run: Run, run_dir: Path, tmp_path: Path, include_restricted: bool
):
    export(run_dir, "parquet", tmp_path, include_restricted=include_restricted)
    for name, frame in (
        ("persons", run.persons(include_restricted)),
        ("households", run.households(include_restricted)),
    ):
        exported = ds.dataset(tmp_path / name, format="parquet").to_table()
        assert [c for c in frame.columns if c != "birth_date_precision"] == exported.column_names
        assert _records(frame) == exported.to_pylist(), name


def test_columns_are_typed(run: Run):
    persons = run.persons()
    assert persons["age"].dtype == "Int32" and persons["restricted"].dtype == "boolean"
    assert list(persons["sex"].cat.categories[:2]) == ["M", "F"]
    assert "head" in persons["relation"].cat.categories and persons["relation"].dtype == "category"
    assert list(persons["marital_status"].cat.categories[:3]) == ["single", "married", "widowed"]
    assert pd.api.types.is_datetime64_any_dtype(persons["birth_date"])
    planted = persons.set_index("name").loc["Josep Puig i Serra"]
    assert planted["birth_date"] == pd.Timestamp("1885-04-02") and planted["birth_date_precision"] == "day"
    assert run.cells()["status"].dtype == "category"


def test_cells_equal_the_query_view(run: Run, run_dir: Path):
    assert _records(run.cells()) == [
        dict(zip(result.columns, row))
        for result in [run_query(run_dir, "SELECT * FROM cells ORDER BY page_id, row, col")]
        for row in result.rows
    ]
    waiting = run.cells(status="needs_review")
    count = run_query(run_dir, "SELECT COUNT(*) FROM cells WHERE status = 'needs_review'").rows[0][0]
    assert len(waiting) == count
    assert set(waiting["status"]) == {"needs_review"}
    both = run.cells(status=["accepted", "corrected"])
    assert set(both["status"]) == {"accepted", "corrected"}
    with pytest.raises(UsageError, match="unknown cell status 'reviewed'"):
        run.cells(status="reviewed")


def test_query_equals_census_query(run: Run, run_dir: Path):
    sql = "SELECT sex, relation, COUNT(*) AS n, AVG(age) AS mean_age FROM persons GROUP BY ALL ORDER BY ALL"
    frame = run.query(sql)
    assert frame["relation"].dtype == "category" and frame["n"].dtype == "Int64"
    assert _records(frame) == json.loads(_cli("query", str(run_dir), sql, "--format", "json"))
    with pytest.raises(UsageError, match="read-only"):
        run.query("DROP VIEW persons")


def test_search_equals_census_search(run: Run, run_dir: Path):
    hits = run.search("Jph. Puch y Serra", born=(1880, 1890), limit=5)
    assert hits["name"][0] == "Josep Puig i Serra" and hits["row"].dtype == "Int32"
    cli = [json.loads(line) for line in _cli(
        "search", str(run_dir), "Jph. Puch y Serra", "--born", "1880-1890", "--limit", "5", "--json"
    ).splitlines()]
    assert _records(hits) == [{key: value for key, value in hit.items() if key != "crop"} for hit in cli]
    assert _records(run.search("Jph. Puch y Serra", born="1880-1890", limit=5)) == _records(hits)
    nobody = run.search("Qqqqxz Wwwwvy")
    assert nobody.empty and list(nobody.columns) == list(hits.columns)


def test_restricted_persons_are_masked_unless_asked(run: Run):
    frames = {
        "persons": run.persons(),
        "households": run.households(),
        "cells": run.cells(),
        "corrections": run.query("SELECT * FROM corrections"),
        "pages": run.query("SELECT * FROM pages"),
    }
    for name in (CORRECTED_NAME, "Quixotescu", "Plughvart Mnemosine"):
        frames[f"search {name}"] = run.search(name, limit=50)
    for where, frame in frames.items():
        _assert_clean(frame.to_csv(), where)
    persons = frames["persons"]
    restricted = persons[persons["restricted"]]
    assert len(restricted) >= 2 and restricted["name"].isna().all() and restricted["birth_date"].isna().all()
    assert CORRECTED_NAME in set(run.persons(include_restricted=True)["name"].dropna())
    assert run.search(CORRECTED_NAME, include_restricted=True)["name"][0] == CORRECTED_NAME
    assert CORRECTED_NAME in set(run.cells(include_restricted=True)["text"].dropna())


def test_crop_shows_unrestricted_rows_only(run: Run):
    planted = run.search("Josep Puig i Serra", limit=1)["person_id"][0]
    image = run.crop(planted)
    assert image.width > 5 * image.height > 100  # a whole register row, not a cell or the page
    restricted = run.persons().query("restricted")["person_id"]
    with pytest.raises(UsageError, match="under the embargo"):
        run.crop(restricted.iloc[0])
    with pytest.raises(UsageError, match="no person"):
        run.crop("nobody' OR 1=1 --")


def test_open_run_refuses_what_is_not_a_run(tmp_path: Path):
    with pytest.raises(UsageError, match="no store"):
        open_run(tmp_path / "missing")
    with pytest.raises(UsageError, match="no store"):
        open_run(tmp_path)
    (tmp_path / "census.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(UsageError, match="not a census store"):
        open_run(tmp_path)


def test_help_documents_the_api():
    assert "UsageError" in pydoc.render_doc(open_run) and "help(Run)" in pydoc.render_doc(open_run)
    text = pydoc.render_doc(Run)
    for method in ("persons", "households", "cells", "search", "query", "crop"):
        doc = getattr(Run, method).__doc__ or ""
        assert method in text and len(doc.split()) >= 30, method
    assert "include_restricted" in text and "Columns" in text


def test_import_is_lazy_and_census_is_an_alias():
    code = (
        "import sys, pipeline; "
        "assert 'pandas' not in sys.modules and 'pipeline.notebook' not in sys.modules; "
        "from census import open_run; assert pipeline.open_run is open_run"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_documented_example_runs(run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(run_dir.parent.parent)  # the example opens runs/samples
    namespace: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    assert namespace["hits"]["name"][0] == "Josep Puig i Serra"
    assert namespace["counts"].to_numpy().sum() == run_query(
        run_dir, "SELECT COUNT(*) FROM persons WHERE age IS NOT NULL AND sex IS NOT NULL"
    ).rows[0][0]
    for image in ("age-pyramid.png", "best-hit.png"):
        assert (run_dir.parent.parent / image).read_bytes()[:4] == b"\x89PNG"
