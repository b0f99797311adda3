"""Every printed column is kept, end to end: a form with an order number, literacy in two columns and
a column the template does not know, through `census run`, the store, `census query` and `census export`."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.pagexml import read_json_groundtruth

TEMPLATE = "padron-espanol-1930"
FORM = {"order_number": True, "split_literacy": True, "extra_header": "Observaciones"}
EXTRA = "extra_observaciones"


def census(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the run directory, the page's JSON ground truth)."""
    from pipeline.synth import generate_pages

    scans, run_dir = tmp_path_factory.mktemp("scans"), tmp_path_factory.mktemp("run")
    generate_pages(scans, n_pages=1, seed=3, template=TEMPLATE, overrides=FORM)
    done = census("run", str(scans), "--out", str(run_dir), "--template", TEMPLATE, "--json")
    assert done.returncode == 0, done.stderr
    (run_dir / "embargo.yaml").write_text("years: 0\n", encoding="utf-8")  # nothing embargoed here
    return run_dir, next(scans.glob("*.json"))


def test_every_printed_column_is_mapped_to_its_field(run: tuple[Path, Path]) -> None:
    run_dir, truth_path = run
    truth = read_json_groundtruth(truth_path)
    with sqlite3.connect(run_dir / "census.sqlite") as connection:
        fields = [row[0] for row in connection.execute("SELECT field FROM cells WHERE row = 0 ORDER BY col")]
        numbers = [row[0] for row in connection.execute("SELECT num FROM persons WHERE num IS NOT NULL")]
        literacy = connection.execute("SELECT COUNT(can_read), COUNT(can_write) FROM persons").fetchone()
    assert fields == [column.field for column in truth.columns]
    assert fields[0] == "num" and {"can_read", "can_write", EXTRA} <= set(fields) and "literacy" not in fields
    assert len(numbers) > 10 and min(literacy) > 10  # typed values: integers, the vocabulary's yes / no
    assert all(isinstance(number, int) for number in numbers)


def test_the_unknown_column_reaches_query_and_export(run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, _ = run
    with sqlite3.connect(run_dir / "census.sqlite") as connection:
        written = dict(connection.execute(
            f"SELECT p.person_id, p.{EXTRA} FROM persons p WHERE p.{EXTRA} IS NOT NULL").fetchall())
        cells = dict(connection.execute(
            "SELECT page_id || ':r' || row, json_extract(value, '$') FROM cells "
            "WHERE field = ? AND value IS NOT NULL", (EXTRA,)).fetchall())
    assert written and written == cells  # each person's value is its cell's
    queried = census("query", str(run_dir), f"SELECT COUNT({EXTRA}) AS n FROM persons", "--format", "json")
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout) == [{"n": len(written)}]
    done = census("export", str(run_dir), "--format", "csv", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [row for path in tmp_path.rglob("*.csv") if "household" not in path.name
            for row in csv.DictReader(path.open(encoding="utf-8"))]
    exported = {row["person_id"]: row[EXTRA] for row in rows if row.get(EXTRA)}
    assert exported == written
    codebook = json.loads(next(tmp_path.rglob("codebook.json")).read_text(encoding="utf-8"))
    assert EXTRA in json.dumps(codebook)


def test_the_unknown_column_of_a_restricted_person_is_masked(run: tuple[Path, Path], tmp_path: Path) -> None:
    """Its handwriting may name or date anyone: withheld like names, dates and addresses."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    (run_dir / "embargo.yaml").write_text("years: 300\n", encoding="utf-8")  # everyone restricted
    count = f"SELECT COUNT({EXTRA}) AS n FROM persons"
    masked = census("query", str(run_dir), count, "--format", "json")
    full = census("query", str(run_dir), count, "--format", "json", "--include-restricted")
    assert masked.returncode == full.returncode == 0, masked.stderr + full.stderr
    assert json.loads(masked.stdout) == [{"n": 0}] and json.loads(full.stdout)[0]["n"] > 0
    out = tmp_path / "export"
    done = census("export", str(run_dir), "--format", "csv", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = [row for path in out.rglob("*.csv") if "household" not in path.name
            for row in csv.DictReader(path.open(encoding="utf-8"))]
    assert rows and not any(row.get(EXTRA) for row in rows)
    codebook = json.loads(next(out.rglob("codebook.json")).read_text(encoding="utf-8"))
    entry = next(field for field in codebook["persons"] if field["column"] == EXTRA)
    assert entry["embargoed"]
