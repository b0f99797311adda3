"""`census query`: read-only SQL (DuckDB) over a run's data.

DuckDB cannot read SQLite here without downloading an extension, so the store is snapshotted
to Parquet under RUN_DIR/query/<masked|full>/ (persons and households partitioned like the
Parquet export, plus cells, pages and corrections) whenever the store has changed since the
last snapshot. The snapshot is masked by the embargo unless include_restricted, so SQL cannot
reach restricted values. Tables are views over those Parquet files.

Read-only by construction: only one SELECT/EXPLAIN statement per call is accepted; DuckDB runs in memory
with external access switched off except for the snapshot folder, and the configuration is
locked, so COPY, ATTACH, INSTALL/LOAD, SET and reading any other file all fail.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from pipeline.dataset import dataset, embargo
from pipeline.errors import UsageError

QUERY_DIR = "query"
# Part of the snapshot's fingerprint: bumped whenever what a snapshot masks changes, so snapshots
# written by an earlier version are rebuilt rather than served (2: households' shared address).
SNAPSHOT_VERSION = 2
ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
INSTALL = re.compile(r"\s*(FORCE\s+)?INSTALL\b", re.IGNORECASE)

# A cell is hidden when its row belongs to a restricted person and its field is masked.
HIDDEN = "r.page_id IS NOT NULL AND (c.field IS NULL OR c.field IN ({fields}))"
MASKED_CELLS_SQL = f"""
SELECT c.* REPLACE (
    CASE WHEN {HIDDEN} THEN NULL ELSE c.text END AS text,
    CASE WHEN {HIDDEN} THEN NULL ELSE c.value END AS value,
    CASE WHEN {HIDDEN} THEN NULL ELSE c.machine_text END AS machine_text)
FROM cells c LEFT JOIN restricted_rows r USING (page_id, row)
"""
MASKED_CORRECTIONS_SQL = f"""
SELECT k.* REPLACE (
    CASE WHEN {HIDDEN} THEN NULL ELSE k.old_value END AS old_value,
    CASE WHEN {HIDDEN} THEN NULL ELSE k.new_value END AS new_value)
FROM corrections k LEFT JOIN cells c USING (cell_id)
    LEFT JOIN restricted_rows r ON r.page_id = c.page_id AND r.row = c.row
"""


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    seconds: float


def snapshot_dir(run_dir: Path, include_restricted: bool) -> Path:
    return Path(run_dir) / QUERY_DIR / ("full" if include_restricted else "masked")


def _fingerprint(run_dir: Path, rule: embargo.EmbargoRule) -> str:
    from pipeline.dataset.search import store_fingerprint

    return f"v{SNAPSHOT_VERSION}/{store_fingerprint(run_dir, rule)}"


def _store_table(path: Path, table: str) -> pa.Table:
    return dataset.read_arrow(path, f"SELECT * FROM {table}")


def build_snapshot(run_dir: Path, include_restricted: bool, rule: embargo.EmbargoRule | None = None) -> Path:
    """Write the Parquet snapshot the query views read; returns its folder."""
    import duckdb
    import pyarrow.parquet as pq

    from pipeline.dataset.export import households_table, write_partitioned

    rule = rule or embargo.load_rule(run_dir)
    fingerprint = _fingerprint(run_dir, rule)
    data = dataset.load(run_dir, include_restricted=include_restricted, rule=rule)
    target = snapshot_dir(run_dir, include_restricted)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_partitioned(data.persons, tmp / "persons", "parquet")
    households = households_table(data.persons, data.report.masked_fields)
    write_partitioned(households, tmp / "households", "parquet")
    path = dataset.store_path(run_dir)
    connection = duckdb.connect()
    try:
        restricted = data.persons.filter(data.persons["restricted"]).select(["page_id", "row"])
        connection.register(
            "restricted_rows", restricted if not include_restricted else restricted.slice(0, 0)
        )
        connection.register("cells", _store_table(path, "cells"))
        connection.register("corrections", _store_table(path, "corrections"))
        fields = ", ".join(f"'{field}'" for field in embargo.masked_fields(data.template, rule))
        pq.write_table(
            connection.sql(MASKED_CELLS_SQL.format(fields=fields)).to_arrow_table(), tmp / "cells.parquet"
        )
        pq.write_table(
            connection.sql(MASKED_CORRECTIONS_SQL.format(fields=fields)).to_arrow_table(),
            tmp / "corrections.parquet",
        )
    finally:
        connection.close()
    pq.write_table(_store_table(path, "pages"), tmp / "pages.parquet")
    (tmp / "fingerprint.json").write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return target


def ensure_snapshot(run_dir: Path, include_restricted: bool) -> Path:
    rule = embargo.load_rule(run_dir)
    target = snapshot_dir(run_dir, include_restricted)
    stamp = target / "fingerprint.json"
    current = json.loads(stamp.read_text(encoding="utf-8"))["fingerprint"] if stamp.is_file() else None
    if current != _fingerprint(run_dir, rule):
        print("query: the store changed; writing its Parquet snapshot...", file=sys.stderr)
        build_snapshot(run_dir, include_restricted, rule)
    return target


def check_read_only(connection: Any, sql: str) -> None:
    """Reject anything but one SELECT/EXPLAIN statement before DuckDB runs it."""
    import duckdb

    try:
        statements = connection.extract_statements(sql)
    except duckdb.Error as error:
        raise UsageError(f"SQL error: {error}") from error
    if not statements:
        raise UsageError("empty SQL")
    for statement in statements:
        kind = statement.type.name
        if kind not in ALLOWED_STATEMENTS:
            # DuckDB files INSTALL under LOAD: name the statement as the user wrote it.
            written = "INSTALL" if INSTALL.match(statement.query) else kind
            raise UsageError(f"read-only: {written} statements are not allowed (only SELECT)")
    if len(statements) > 1:
        raise UsageError(
            f"one statement at a time: got {len(statements)}; run each SELECT in its own `census query`"
        )


def open_readonly(folder: Path) -> Any:
    """An in-memory DuckDB with the snapshot's views and no other file access."""
    import duckdb

    connection = duckdb.connect(
        ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    root = folder.resolve()
    for table in ("persons", "households"):
        connection.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
            f"'{root / table}/*/*/*.parquet', hive_partitioning = false)"
        )
    for table in ("cells", "pages", "corrections"):
        connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{root / table}.parquet')")
    connection.execute(f"SET allowed_directories = ['{root}/']")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def _execute(run_dir: Path, sql: str, include_restricted: bool, fetch: Any) -> tuple[Any, float]:
    """Run read-only `sql` over the run's (masked) snapshot; `fetch(connection, sql)` runs and reads it."""
    import time

    import duckdb

    folder = ensure_snapshot(Path(run_dir), include_restricted)
    connection = open_readonly(folder)
    try:
        check_read_only(connection, sql)
        start = time.perf_counter()
        try:
            fetched = fetch(connection, sql)
        except duckdb.Error as error:
            raise UsageError(f"SQL error: {error}") from error
        return fetched, round(time.perf_counter() - start, 4)
    finally:
        connection.close()


def run_query(run_dir: Path, sql: str, include_restricted: bool = False) -> QueryResult:
    """Run read-only `sql` over the run's (masked) tables."""

    def fetch(connection: Any, sql: str) -> tuple[list[str], list[list[Any]]]:
        relation = connection.execute(sql)
        rows = relation.fetchall()
        return [description[0] for description in relation.description or []], [list(row) for row in rows]

    (columns, rows), seconds = _execute(run_dir, sql, include_restricted, fetch)
    return QueryResult(columns=columns, rows=rows, seconds=seconds)


def query_arrow(run_dir: Path, sql: str, include_restricted: bool = False) -> pa.Table:
    """The same read-only query as `run_query`, as an Arrow table (DuckDB's column types kept)."""
    table, _ = _execute(
        run_dir, sql, include_restricted, lambda connection, sql: connection.sql(sql).to_arrow_table()
    )
    return table


def format_result(result: QueryResult, fmt: str) -> str:
    """Render as an aligned text table, CSV or JSON (a list of objects)."""
    if fmt == "json":
        return json.dumps(
            [dict(zip(result.columns, row)) for row in result.rows], ensure_ascii=False, default=str, indent=1
        )
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return buffer.getvalue().rstrip("\n")
    if fmt != "table":
        raise UsageError(f"unknown format {fmt!r}: table, csv or json")
    cells = [result.columns] + [["" if value is None else str(value) for value in row] for row in result.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(result.columns))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
