"""`census query`: DuckDB over the run's snapshot, read-only, current (corrected) values."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dataset import datagen
from pipeline.run import store
from pipeline.errors import UsageError
from pipeline.dataset.query import format_result, run_query


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("query-run")
    datagen.generate_run(folder, pages=2, seed=8, images=False)
    (folder / "embargo.yaml").write_text("years: 0\n", encoding="utf-8")
    return folder


def _sqlite(run_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        return connection.execute(sql).fetchall()


def test_group_by_matches_the_store(run_dir: Path):
    result = run_query(
        run_dir, "SELECT relation, COUNT(*) AS n FROM persons GROUP BY relation ORDER BY relation"
    )
    assert result.columns == ["relation", "n"]
    assert [tuple(row) for row in result.rows] == _sqlite(
        run_dir, "SELECT relation, COUNT(*) FROM persons GROUP BY relation ORDER BY relation"
    )


def test_all_tables_are_queryable(run_dir: Path):
    for table, expected in (
        ("cells", "SELECT COUNT(*) FROM cells"),
        ("pages", "SELECT COUNT(*) FROM pages"),
        ("households", "SELECT COUNT(DISTINCT household_id) FROM persons"),
    ):
        assert run_query(run_dir, f"SELECT COUNT(*) FROM {table}").rows == [
            [_sqlite(run_dir, expected)[0][0]]
        ]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM persons",
        "DROP VIEW persons",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO persons SELECT * FROM persons",
        "COPY persons TO 'out.csv'",
        "ATTACH 'other.db'",
        "INSTALL sqlite",
        "LOAD sqlite_scanner",
        "SET enable_external_access = true",
        "PRAGMA database_list",
        "SELECT 1; DROP VIEW persons",
    ],
)
def test_writes_and_configuration_are_rejected(run_dir: Path, sql: str):
    with pytest.raises(UsageError):
        run_query(run_dir, sql)


@pytest.mark.parametrize(
    ("sql", "named"), [("INSTALL httpfs", "INSTALL"), ("force install httpfs", "INSTALL"), ("LOAD httpfs", "LOAD")]
)
def test_extension_statements_are_refused_by_their_own_name(run_dir: Path, sql: str, named: str):
    with pytest.raises(UsageError, match=f"read-only: {named} statements"):
        run_query(run_dir, sql)


def test_two_statements_are_refused_not_half_printed(run_dir: Path):
    with pytest.raises(UsageError, match="one statement at a time: got 2"):
        run_query(run_dir, "SELECT 1 AS a; SELECT 2 AS b")


@pytest.mark.parametrize(
    "reader",
    [
        "read_csv('/etc/passwd')",
        "read_json('{run}/pages/*.json')",
        "read_text('{run}/census.sqlite')",
        "read_parquet('/tmp/*.parquet')",
    ],
)
def test_files_outside_the_snapshot_cannot_be_read(run_dir: Path, reader: str):
    with pytest.raises(UsageError, match="Permission"):
        run_query(run_dir, f"SELECT * FROM {reader.format(run=run_dir)}")


def test_snapshot_follows_corrections(run_dir: Path):
    person_id, cell_id, page_id = _sqlite(
        run_dir, "SELECT person_id, json_extract(cell_ids, '$.occupation'), page_id FROM persons LIMIT 1"
    )[0]
    with store.connect(run_dir) as connection:
        connection.execute(
            "INSERT INTO corrections (cell_id, old_value, new_value, new_status, reviewer, corrected_at, "
            "source) "
            "VALUES (?, NULL, 'rellotger', 'corrected', 'tester', '2026-03-03T00:00:00', 'test')",
            (cell_id,),
        )
        store.reapply_corrections(connection, page_id)
        connection.commit()
    result = run_query(run_dir, f"SELECT occupation FROM persons WHERE person_id = '{person_id}'")
    assert result.rows == [["rellotger"]]
    cells = run_query(run_dir, f"SELECT text, status FROM cells WHERE cell_id = '{cell_id}'")
    assert cells.rows == [["rellotger", "corrected"]]


def test_formats(run_dir: Path):
    result = run_query(run_dir, "SELECT sex, COUNT(*) AS n FROM persons GROUP BY sex ORDER BY sex")
    assert json.loads(format_result(result, "json"))[0]["sex"] == "F"
    assert format_result(result, "csv").splitlines()[0] == "sex,n"
    table = format_result(result, "table").splitlines()
    assert table[0].split() == ["sex", "n"] and set(table[1]) <= {"-", " "}


def test_cli_query(run_dir: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "query",
            str(run_dir),
            "SELECT COUNT(*) AS n FROM persons",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["n"] == _sqlite(run_dir, "SELECT COUNT(*) FROM persons")[0][0]
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "query", str(run_dir), "DROP VIEW persons"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "read-only" in refused.stderr
