"""System of record for one run: RUN_DIR/census.sqlite (WAL).

Filled from the per-page results (RUN_DIR/pages/*.json) by the main process only, one
page per transaction, idempotently: writing a page again replaces its cells and persons
and re-applies the reviewers' corrections, which are append-only and never deleted.
A printed column the template does not know (`ColumnMapping.method` "extra") becomes a text
column of the run: of the persons table and of the template stored in `meta`, which every
reader of the run (query, export, search, notebooks, review) takes its columns from.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.models import BBox, Cell, PageResult, Person
from pipeline.stages.templates import Template, extra_column

STORE_NAME = "census.sqlite"
ADAPTED_MODEL_KEY = "adapted_model"  # meta: the run's adapted ONNX (`census adapt`), relative to the run folder

# SQL type of each template field type in the persons table.
SQL_TYPES = {"age": "INTEGER", "number": "INTEGER"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pages (
    page_id TEXT PRIMARY KEY, source TEXT NOT NULL, page_index INTEGER NOT NULL,
    width INTEGER, height INTEGER, skew_deg REAL, status TEXT NOT NULL, error TEXT,
    n_rows INTEGER, n_cols INTEGER, processed_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY, page_id TEXT NOT NULL REFERENCES pages(page_id),
    row INTEGER NOT NULL, col INTEGER NOT NULL, field TEXT,
    text TEXT NOT NULL, value TEXT, confidence REAL NOT NULL, status TEXT NOT NULL,
    reasons TEXT NOT NULL DEFAULT '[]',
    x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER, engine TEXT, model TEXT,
    machine_text TEXT NOT NULL DEFAULT '', machine_status TEXT NOT NULL DEFAULT '', value_from TEXT,
    machine_confidence REAL);
CREATE INDEX IF NOT EXISTS cells_page ON cells(page_id, row, col);
CREATE INDEX IF NOT EXISTS cells_status ON cells(status);
CREATE INDEX IF NOT EXISTS cells_value_from ON cells(value_from);
CREATE TABLE IF NOT EXISTS corrections (
    correction_id INTEGER PRIMARY KEY AUTOINCREMENT,
    cell_id TEXT NOT NULL, old_value TEXT, new_value TEXT, new_status TEXT NOT NULL,
    reviewer TEXT, corrected_at TEXT NOT NULL, source TEXT NOT NULL,
    annotation_id TEXT, UNIQUE (source, annotation_id, corrected_at));
CREATE INDEX IF NOT EXISTS corrections_cell ON corrections(cell_id, corrected_at);
CREATE TABLE IF NOT EXISTS row_stats (
    page_id TEXT NOT NULL, row INTEGER NOT NULL, confidence REAL, min_confidence REAL,
    cells_needs_review INTEGER, cells_corrected INTEGER, consistency_flags TEXT,
    PRIMARY KEY (page_id, row));
CREATE VIEW IF NOT EXISTS review_queue AS
    SELECT c.*, p.source, p.page_index FROM cells c JOIN pages p USING (page_id)
    WHERE c.status = 'needs_review';
"""


@contextmanager
def connect(run_dir: Path, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    path = Path(run_dir) / STORE_NAME
    if readonly:
        connection = checked(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30), path)
    else:
        connection = checked(sqlite3.connect(path, timeout=30), path)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        _add_new_columns(connection)
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    finally:
        connection.close()


def checked(connection: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """`connection` once SQLite has read its file's header; UsageError (closed) when it is not a database."""
    try:
        connection.execute("PRAGMA schema_version")
    except sqlite3.DatabaseError as error:
        connection.close()
        raise UsageError(f"{path} is not a census store: {error}") from error
    return connection


def _add_new_columns(connection: sqlite3.Connection) -> None:
    """Bring a store written by an earlier version up to the schema (columns added since)."""
    names = {row[1] for row in connection.execute("PRAGMA table_info(cells)")}
    if names and "value_from" not in names:
        with connection:
            connection.execute("ALTER TABLE cells ADD COLUMN value_from TEXT")
            connection.execute("CREATE INDEX cells_value_from ON cells(value_from)")
    if names and "machine_confidence" not in names:  # until a run had its own calibration, confidence was it
        with connection:
            connection.execute("ALTER TABLE cells ADD COLUMN machine_confidence REAL")
            connection.execute("UPDATE cells SET machine_confidence = confidence")


def persons_columns(template: Template) -> list[tuple[str, str]]:
    """(column, SQL type) of the persons table for this template."""
    return [(column.key, SQL_TYPES.get(column.type, "TEXT")) for column in template.columns]


def create(connection: sqlite3.Connection, template: Template) -> None:
    """Create the schema (idempotent) and the persons table typed by `template`."""
    new_store = connection.execute("SELECT name FROM sqlite_master WHERE name = 'pages'").fetchone() is None
    connection.executescript(SCHEMA)
    if new_store:  # stores made before row_stats existed keep scanning their cells instead
        connection.execute("INSERT OR IGNORE INTO meta VALUES ('row_stats', '1')")
    typed = ", ".join(f"{name} {sql_type}" for name, sql_type in persons_columns(template))
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS persons (person_id TEXT PRIMARY KEY, page_id TEXT NOT NULL, "
        f"row INTEGER NOT NULL, household_id TEXT, {typed}, cell_ids TEXT NOT NULL DEFAULT '{{}}', "
        f"x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER)")
    connection.execute("INSERT OR IGNORE INTO meta VALUES ('template', ?)", (template.name,))
    connection.execute(
        "INSERT OR IGNORE INTO meta VALUES ('template_json', ?)", (template.model_dump_json(),))
    connection.commit()


def adapted_model(connection: sqlite3.Connection, run_dir: Path) -> Path | None:
    """The run's adapted ONNX model (`census adapt`, named in meta ADAPTED_MODEL_KEY), or None: the shipped one."""
    row = connection.execute("SELECT value FROM meta WHERE key = ?", (ADAPTED_MODEL_KEY,)).fetchone()
    return Path(run_dir).resolve() / row[0] if row else None


def stored_template(connection: sqlite3.Connection) -> Template:
    row = connection.execute("SELECT value FROM meta WHERE key = 'template_json'").fetchone()
    return Template.model_validate_json(row[0])


def _json_value(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def write_page(connection: sqlite3.Connection, result: PageResult, template: Template) -> None:
    """Replace everything stored for this page with `result`, in one transaction."""
    page = result.page
    page_id = page.page_id
    grid = result.grid
    with connection:
        template = with_extra_columns(connection, template, result)
        connection.execute("DELETE FROM persons WHERE page_id = ?", (page_id,))
        connection.execute("DELETE FROM cells WHERE page_id = ?", (page_id,))
        connection.execute(
            "INSERT OR REPLACE INTO pages (page_id, source, page_index, width, height, skew_deg, "
            "status, error, n_rows, n_cols) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (page_id, page.source, page.page_index, page.width, page.height,
             result.preprocess.skew_deg if result.preprocess else None, result.status, result.error,
             len(grid.row_bounds) - 1 - grid.header_rows if grid else None,
             len(grid.col_bounds) - 1 if grid else None))
        connection.executemany(
            "INSERT INTO cells (cell_id, page_id, row, col, field, text, value, confidence, status, "
            "reasons, x0, y0, x1, y1, engine, model, machine_text, machine_status, value_from, "
            "machine_confidence) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(cell.cell_id, page_id, cell.row, cell.col, cell.field, cell.text,
              _json_value(cell.value), cell.confidence, cell.status,
              json.dumps(cell.reasons, ensure_ascii=False), cell.bbox.x0, cell.bbox.y0,
              cell.bbox.x1, cell.bbox.y1, cell.engine, cell.model, cell.text, cell.status, cell.value_from,
              cell.confidence)
             for cell in result.cells])
        insert_persons(connection, page_id, result.persons, template)
        if connection.execute("SELECT 1 FROM corrections c JOIN cells USING (cell_id) WHERE cells.page_id = ? "
                              "LIMIT 1", (page_id,)).fetchone():
            # Reviewers corrected this page before it was re-recognised: their values win.
            recompute_page(connection, page_id, template)
        else:
            refresh_row_stats(connection, page_id)


def with_extra_columns(connection: sqlite3.Connection, template: Template, result: PageResult) -> Template:
    """`template` with the run's extra columns, those of `result` added first where new: to the
    persons table and the stored template (inside the caller's transaction)."""
    stored = stored_template(connection)
    keys = {column.key for column in template.columns}
    columns = [*template.columns, *(column for column in stored.columns if column.key not in keys)]
    known = {column.key for column in columns}
    mapping = result.columns
    new = [extra_column(key, mapping.headers.get(col, "")) for col, key in sorted(mapping.fields.items())
           if mapping.method.get(col) == "extra" and key is not None and key not in known] if mapping else []
    if not new:
        return template.model_copy(update={"columns": columns})
    for column in new:  # keys are safe SQL names (ColumnSpec's pattern)
        connection.execute(f"ALTER TABLE persons ADD COLUMN {column.key} TEXT")
    grown = stored.model_copy(update={"columns": [*stored.columns, *new]})
    connection.execute("UPDATE meta SET value = ? WHERE key = 'template_json'", (grown.model_dump_json(),))
    return template.model_copy(update={"columns": [*columns, *new]})


def insert_persons(connection: sqlite3.Connection, page_id: str, persons: list[Person], template: Template) -> None:
    """Insert a page's person rows (inside the caller's transaction)."""
    keys = [name for name, _ in persons_columns(template)]
    placeholders = ",".join("?" * (len(keys) + 9))
    connection.executemany(
        f"INSERT INTO persons (person_id, page_id, row, household_id, {', '.join(keys)}, cell_ids, "
        f"x0, y0, x1, y1) VALUES ({placeholders})",
        [(f"{page_id}:r{person.row}", page_id, person.row, person.household_id,
          *[person.values.get(key) for key in keys], json.dumps(person.cell_ids),
          *((person.row_bbox.x0, person.row_bbox.y0, person.row_bbox.x1, person.row_bbox.y1)
            if person.row_bbox else (None,) * 4))
         for person in persons])


def replace_derived(connection: sqlite3.Connection, page_id: str, cells: list[Cell], persons: list[Person],
                    template: Template) -> None:
    """Store re-derived typed cell values and person rows of a page, e.g. after a correction
    (inside the caller's transaction; texts, statuses and corrections are left as they are)."""
    connection.executemany("UPDATE cells SET value = ?, value_from = ? WHERE cell_id = ?",
                           [(_json_value(cell.value), cell.value_from, cell.cell_id) for cell in cells])
    connection.execute("DELETE FROM persons WHERE page_id = ?", (page_id,))
    insert_persons(connection, page_id, persons, template)


def page_cells(connection: sqlite3.Connection, page_id: str) -> list[Cell]:
    """The stored cells of a page, current texts (corrections applied), in row/column order."""
    rows = connection.execute("SELECT * FROM cells WHERE page_id = ? ORDER BY row, col", (page_id,))
    return [Cell(cell_id=row["cell_id"], page_id=page_id, row=row["row"], col=row["col"], field=row["field"],
                 text=row["text"], value=json.loads(row["value"]) if row["value"] is not None else None,
                 value_from=row["value_from"],
                 confidence=row["confidence"], status=row["status"], reasons=json.loads(row["reasons"]),
                 bbox=BBox(x0=row["x0"], y0=row["y0"], x1=row["x1"], y1=row["y1"]),
                 engine=row["engine"] or "", model=row["model"] or "")
            for row in rows]


def recompute_page(connection: sqlite3.Connection, page_id: str, template: Template) -> None:
    """Re-overlay corrections and re-derive typed values, persons and households of one page
    (inside the caller's transaction)."""
    from pipeline.dataset import households
    from pipeline.stages import fields

    reapply_corrections(connection, page_id)
    cells, persons = fields.interpret(page_cells(connection, page_id), template)
    persons = households.assign_households(persons, template, page_id)
    replace_derived(connection, page_id, cells, persons, template)


def row_stats_sql(where: str = "", ditto_sources: bool = True) -> str:
    """Per register row: name confidence, min confidence, review and correction counts, and the
    household consistency reasons the fields stage recorded on its cells. A ditto mark whose value was
    copied from a cell still awaiting review counts as awaiting review too (`ditto_sources`: the store
    records where dittos copied from; stores older than that column cannot)."""
    from pipeline.dataset.households import HOUSEHOLD_REASONS

    flags = " || ".join(f"CASE WHEN MAX(instr(c.reasons, '{reason}')) > 0 THEN '{reason},' ELSE '' END"
                        for reason in HOUSEHOLD_REASONS)
    pending = ("c.status = 'needs_review' OR COALESCE(source.status = 'needs_review', 0)" if ditto_sources
               else "c.status = 'needs_review'")
    sources = "LEFT JOIN cells source ON source.cell_id = c.value_from" if ditto_sources else ""
    return f"""
SELECT c.page_id, c.row,
       MAX(CASE WHEN c.field = 'name' THEN CASE WHEN c.status = 'corrected' THEN 1.0 ELSE c.confidence END END)
           AS confidence,
       MIN(CASE WHEN c.status = 'corrected' THEN 1.0 ELSE c.confidence END) AS min_confidence,
       SUM({pending}) AS cells_needs_review, SUM(c.status = 'corrected') AS cells_corrected,
       NULLIF(RTRIM({flags}, ','), '') AS consistency_flags
FROM cells c {sources} WHERE c.status != 'empty' {where} GROUP BY c.page_id, c.row"""


def refresh_row_stats(connection: sqlite3.Connection, page_id: str | None = None) -> None:
    """Recompute the row statistics of one page (or of every page), inside the caller's transaction:
    kept at write time so that readers of a million-person run need not scan all its cells."""
    if page_id is None:
        connection.execute("DELETE FROM row_stats")
        connection.execute(f"INSERT INTO row_stats {row_stats_sql()}")
        return
    connection.execute("DELETE FROM row_stats WHERE page_id = ?", (page_id,))
    connection.execute(f"INSERT INTO row_stats {row_stats_sql('AND c.page_id = ?')}", (page_id,))


def reapply_corrections(connection: sqlite3.Connection, page_id: str) -> None:
    """Overlay each cell's latest correction on its machine reading (inside the caller's transaction)."""
    connection.execute(
        """UPDATE cells SET text = latest.new_value, status = latest.new_status
           FROM (SELECT cell_id, new_value, new_status,
                        ROW_NUMBER() OVER (PARTITION BY cell_id
                                           ORDER BY corrected_at DESC, correction_id DESC) AS rank
                 FROM corrections) AS latest
           WHERE latest.rank = 1 AND latest.cell_id = cells.cell_id AND cells.page_id = ?""",
        (page_id,))
    refresh_row_stats(connection, page_id)


def counts(connection: sqlite3.Connection) -> dict[str, int]:
    """Summary counts for the run report and `census run --json`."""
    def scalar(sql: str) -> int:
        return int(connection.execute(sql).fetchone()[0] or 0)

    return {
        "pages": scalar("SELECT COUNT(*) FROM pages WHERE status = 'done'"),
        "pages_failed": scalar("SELECT COUNT(*) FROM pages WHERE status = 'failed'"),
        "rows": scalar("SELECT COUNT(*) FROM persons"),
        "cells": scalar("SELECT COUNT(*) FROM cells"),
        "cells_accepted": scalar("SELECT COUNT(*) FROM cells WHERE status = 'accepted'"),
        "cells_empty": scalar("SELECT COUNT(*) FROM cells WHERE status = 'empty'"),
        "review_queue": scalar("SELECT COUNT(*) FROM review_queue"),
        "corrections": scalar("SELECT COUNT(*) FROM corrections"),
    }
