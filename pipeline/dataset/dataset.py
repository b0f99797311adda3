"""The historians' view of a run: current (reviewed) persons, households and cells as Arrow
tables, with the privacy embargo applied. Every reader (export, query, search, browse) goes
through here, so corrections and masking are applied the same way everywhere.

Current values: the persons table is the truth, overlaid with each cell's latest correction
(typed by the template), so a correction counts even before it has been propagated into
persons. Masking: see pipeline.dataset.embargo.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from pipeline.dataset import embargo
from pipeline.run import store
from pipeline.errors import UsageError
from pipeline.stages.templates import ColumnSpec, Template

INT_TYPES = {"age", "number"}
PROVENANCE_COLUMNS = {
    "person_id": "stable id '<page_id>:r<row>'",
    "page_id": "page the row was read from ('<sha256 16 hex>-p<page index>')",
    "row": "0-based data row on the page (header rows excluded)",
    "register": "register template name",
    "year": "register year (template)",
    "household_id": "reconstructed household id ('<page_id>:h<n>')",
    "birth_year": "year of birth: from the birth date, else register year minus age",
    "confidence": "calibrated probability that the name cell was read exactly right (1.0 when corrected)",
    "min_confidence": "lowest cell confidence of the row",
    "cells_needs_review": "cells of the row still waiting for review (a ditto mark counts while the cell "
                          "it copies waits)",
    "cells_corrected": "cells of the row corrected by a reviewer",
    "consistency_flags": "household consistency reasons on the row's cells (comma-separated), e.g. "
    "child-older-than-parent",
    "restricted": "true when the embargo rule applies (names, dates and addresses are then NULL)",
    "cell_ids": "JSON: field key -> cell id (provenance of each value)",
    "x0": "row bounding box in original page pixels (left)",
    "y0": "top",
    "x1": "right",
    "y1": "bottom",
}


class Dataset(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    template: Template
    persons: pa.Table
    report: embargo.EmbargoReport


def readonly_uri(path: Path) -> str:
    """SQLite URI opening `path` read-only (quoted: paths may hold '?', '#' or '%')."""
    return f"file:{quote(str(Path(path).resolve()))}?mode=ro"


@contextmanager
def readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an SQLite file, closed on exit."""
    connection = store.checked(sqlite3.connect(readonly_uri(path), uri=True, timeout=30), path)
    try:
        yield connection
    finally:
        connection.close()


def file_fingerprint(path: Path) -> str:
    """Changes whenever the SQLite file (or its write-ahead log) is written."""
    parts = []
    for suffix in ("", "-wal"):
        part = Path(str(path) + suffix)
        if part.exists():
            stat = part.stat()
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
    return "/".join(parts)


def store_path(run_dir: Path) -> Path:
    path = Path(run_dir) / store.STORE_NAME
    if not path.is_file():
        raise UsageError(f"no store at {path}: run `census run ... --out {run_dir}` first")
    return path


def typed_value(column: ColumnSpec, text: str | None, register_year: int | None) -> Any:
    """A reviewer's corrected text as the typed value of `column`, parsed like the fields stage does."""
    if text is None or not text.strip():
        return None
    from pipeline.stages.fields import parse_value

    return parse_value(text, column, register_year).value


def latest_corrections(connection: sqlite3.Connection, template: Template) -> dict[str, dict[str, Any]]:
    """person_id -> {field: typed latest corrected value}."""
    rows = connection.execute(
        """SELECT c.page_id, c.row, c.field, latest.new_value
           FROM (SELECT cell_id, new_value, ROW_NUMBER() OVER (
                     PARTITION BY cell_id ORDER BY corrected_at DESC, correction_id DESC) AS rank
                 FROM corrections) AS latest
           JOIN cells c ON c.cell_id = latest.cell_id
           WHERE latest.rank = 1 AND c.field IS NOT NULL"""
    ).fetchall()
    keys = {column.key: column for column in template.columns}
    overlay: dict[str, dict[str, Any]] = {}
    for page_id, row, field, new_value in rows:
        if field not in keys:
            continue
        value = typed_value(keys[field], new_value, template.register_year)
        if value is None and (new_value or "").strip():
            continue  # a ditto mark or unparsable text: the persons table's value stands
        overlay.setdefault(f"{page_id}:r{row}", {})[field] = value
    return overlay


STATS_TYPES = {
    "page_id": pa.string(),
    "row": pa.int32(),
    "confidence": pa.float32(),
    "min_confidence": pa.float32(),
    "cells_needs_review": pa.int32(),
    "cells_corrected": pa.int32(),
    "consistency_flags": pa.string(),
}


def cell_stats(path: Path) -> pa.Table:
    """Per-row cell statistics, cached beside the store (RUN_DIR/index/cell_stats.parquet) while
    the store is unchanged: scanning millions of cells is the slowest part of reading a run, and
    exports, the query snapshot and the search index all need it."""
    import pyarrow.parquet as pq

    cache = Path(path).parent / "index" / "cell_stats.parquet"
    fingerprint = file_fingerprint(path)
    if cache.is_file():
        cached = pq.read_table(cache)
        if (cached.schema.metadata or {}).get(b"fingerprint") == fingerprint.encode():
            return cached.replace_schema_metadata(None)
    raw = read_arrow(path, "SELECT * FROM row_stats" if has_row_stats(path)
                     else store.row_stats_sql(ditto_sources=False))  # older than the value_from column too
    stats = pa.table({name: conform(raw[name], kind) for name, kind in STATS_TYPES.items()})
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        pq.write_table(stats.replace_schema_metadata({"fingerprint": fingerprint}), tmp)
        tmp.replace(cache)
    except OSError:  # a read-only run directory: no cache, same result
        pass
    return stats


def has_row_stats(path: Path) -> bool:
    """Whether the store keeps its row statistics at write time (stores made since they existed)."""
    with readonly(path) as connection:
        return connection.execute("SELECT 1 FROM meta WHERE key = 'row_stats'").fetchone() is not None


def read_arrow(path: Path, sql: str) -> pa.Table:
    """Run a read-only query into Arrow: ADBC's SQLite driver (columnar, C) when it can type
    the result, else the sqlite3 module row by row (mixed-type columns, driver missing)."""
    try:
        import adbc_driver_sqlite.dbapi as adbc

        with adbc.connect(readonly_uri(path)) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()
    except Exception:  # noqa: BLE001 - any driver failure falls back to the always-correct path
        with readonly(path) as connection:
            cursor = connection.execute(sql)
            names = [description[0] for description in cursor.description]
            rows = cursor.fetchall()
        columns = list(zip(*rows)) if rows else [()] * len(names)
        return pa.table({name: _python_array(column) for name, column in zip(names, columns)})


def _python_array(values: tuple) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types (SQLite affinity): keep them as text
        return pa.array([None if value is None else str(value) for value in values], pa.string())


def arrow_type(column: ColumnSpec) -> pa.DataType:
    return pa.int32() if column.type in INT_TYPES else pa.string()


def conform(array: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """Cast a column read from SQLite to its schema type; values that do not fit become NULL."""
    if array.type == kind:
        return array
    if pa.types.is_null(array.type):
        return pa.chunked_array([pa.nulls(len(array), kind)])
    try:
        return pc.cast(array, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.array([_coerce(value, kind) for value in array.to_pylist()], kind)])


def _coerce(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_integer(kind):
        try:
            return int(str(value).strip())
        except ValueError:
            return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _apply_overlay(table: pa.Table, overlay: dict[str, dict[str, Any]]) -> pa.Table:
    """Replace corrected values, field by field, at the positions of the corrected persons."""
    if not overlay:
        return table
    table = table.combine_chunks()
    ids = table["person_id"]
    for field in sorted({field for updates in overlay.values() for field in updates}):
        targets = [person_id for person_id, updates in overlay.items() if field in updates]
        mask = pc.is_in(ids, value_set=pa.array(targets, pa.string())).combine_chunks()
        positions = ids.take(pc.indices_nonzero(mask)).to_pylist()
        kind = table.schema.field(field).type
        values = pa.array([_coerce(overlay[person_id][field], kind) for person_id in positions], kind)
        index = table.schema.get_field_index(field)
        column = table[field].combine_chunks()
        table = table.set_column(index, field, pc.replace_with_mask(column, mask, values))
    return table


def _per_unique(values: pa.ChunkedArray, function: Any, kind: pa.DataType) -> pa.Array:
    """Apply a Python function once per distinct value (birth dates repeat a lot); NULL stays NULL."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    mapped = pa.array([function(value) for value in encoded.dictionary.to_pylist()], kind)
    return mapped.take(encoded.indices) if len(mapped) else pa.nulls(len(encoded), kind)


def _birth_columns(
    births: pa.ChunkedArray, ages: pa.ChunkedArray, year: int | None, rule: embargo.EmbargoRule
) -> tuple[pa.Array, pa.Array]:
    """birth_year (from the birth date, else register year - age) and the embargo flag."""
    from_date = _per_unique(births, lambda birth: (embargo.parse_birth(birth) or (None,))[0], pa.int32())
    restricted = _per_unique(births, lambda birth: embargo.is_restricted(birth, year, rule), pa.bool_())
    # Null dates are not in the dictionary: they get the rule's verdict for "no birth date".
    restricted = pc.fill_null(restricted, embargo.is_restricted(None, year, rule))
    from_age = (
        pc.subtract(pa.scalar(year, pa.int32()), ages.combine_chunks())
        if year
        else pa.nulls(len(ages), pa.int32())
    )
    return pc.coalesce(from_date, from_age.cast(pa.int32())), restricted


def _mask(table: pa.Table, restricted: pa.Array, fields: list[str]) -> tuple[pa.Table, int]:
    """NULL the `fields` of restricted rows; return the table and how many values were masked."""
    masked = 0
    for field in fields:
        column = table[field]
        masked += pc.sum(pc.and_(restricted, pc.is_valid(column))).as_py() or 0
        table = table.set_column(
            table.schema.get_field_index(field),
            field,
            pc.if_else(restricted, pa.nulls(len(column), type=column.type), column),
        )
    return table, masked


def persons_table(path: Path, template: Template, rule: embargo.EmbargoRule) -> pa.Table:
    """Current persons, typed, with provenance columns and the embargo flag (nothing masked yet)."""
    keys = [column.key for column in template.columns]
    raw = read_arrow(
        path,
        f"SELECT person_id, page_id, row, household_id, {', '.join(keys)}, cell_ids, "
        "x0, y0, x1, y1 FROM persons",
    )
    kinds = {
        "person_id": pa.string(),
        "page_id": pa.string(),
        "row": pa.int32(),
        "household_id": pa.string(),
        **{column.key: arrow_type(column) for column in template.columns},
        "cell_ids": pa.string(),
        "x0": pa.int32(),
        "y0": pa.int32(),
        "x1": pa.int32(),
        "y1": pa.int32(),
    }
    table = pa.table({name: conform(raw[name], kind) for name, kind in kinds.items()})
    with readonly(path) as connection:
        table = _apply_overlay(table, latest_corrections(connection, template))
    stats = cell_stats(path)
    year = template.register_year
    birth_key = embargo.birth_date_field(template)
    births = table[birth_key] if birth_key else pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
    ages = (
        table["age"]
        if "age" in table.column_names
        else pa.chunked_array([pa.nulls(table.num_rows, pa.int32())])
    )
    birth_year, restricted = _birth_columns(births, ages, year, rule)
    n = table.num_rows
    table = (
        table.append_column("register", pa.array([template.name] * n, pa.string()))
        .append_column("year", pa.array([year] * n, pa.int32()))
        .append_column("birth_year", birth_year)
        .append_column("restricted", restricted)
    )
    return _join_stats(
        table, stats, ["person_id", "page_id", "row", "register", "year", "household_id", *keys, "birth_year"]
    )


def _join_stats(persons: pa.Table, stats: pa.Table, leading: list[str]) -> pa.Table:
    """Attach the per-row cell statistics and order by page and row (DuckDB: parallel, fast)."""
    import duckdb

    connection = duckdb.connect()
    try:
        connection.register("persons", persons)
        connection.register("stats", stats)
        return connection.sql(
            f"SELECT {', '.join(f'p.{name}' for name in leading)}, s.confidence, s.min_confidence, "
            "COALESCE(s.cells_needs_review, 0)::INTEGER AS cells_needs_review, "
            "COALESCE(s.cells_corrected, 0)::INTEGER AS cells_corrected, s.consistency_flags, "
            "p.restricted, p.cell_ids, p.x0, p.y0, p.x1, p.y1 "
            "FROM persons p LEFT JOIN stats s USING (page_id, row) ORDER BY p.page_id, p.row"
        ).to_arrow_table()
    finally:
        connection.close()


def load(
    run_dir: Path,
    include_restricted: bool = False,
    rule: embargo.EmbargoRule | None = None,
    write_report: bool = True,
) -> Dataset:
    """Current persons of the run as an Arrow table, masked by the embargo unless asked not to."""
    rule = rule or embargo.load_rule(run_dir)
    path = store_path(run_dir)
    with readonly(path) as connection:
        template = store.stored_template(connection)
    table = persons_table(path, template, rule)
    fields = embargo.masked_fields(template, rule)
    restricted = table["restricted"]
    n_restricted = pc.sum(restricted).as_py() or 0
    masked_values = 0
    if not include_restricted:
        table, masked_values = _mask(table, restricted, [*fields, "birth_year"])
    report = embargo.EmbargoReport(
        rule=rule.describe(),
        include_restricted=include_restricted,
        persons=table.num_rows,
        restricted=n_restricted,
        masked_fields=[] if include_restricted else fields,
        masked_values=masked_values,
        masked_cells=0,
        restricted_person_ids=table.filter(restricted)["person_id"].to_pylist()[:10000],
    )
    if write_report:
        embargo.write_report(run_dir, report)
    return Dataset(template=template, persons=table, report=report)


def page_hidden_boxes(
    run_dir: Path, page_id: str, rows: Iterable[int], rule: embargo.EmbargoRule | None = None
) -> dict[int, list[embargo.Box]]:
    """`embargo.hidden_boxes` of the given restricted rows of one page, read from the run's store, by row."""
    wanted = {(page_id, row) for row in rows}
    if not wanted:
        return {}
    with readonly(store_path(run_dir)) as connection:
        template = store.stored_template(connection)
        cursor = connection.execute(
            "SELECT page_id, row, field, x0, y0, x1, y1 FROM cells WHERE page_id = ?", (page_id,)
        )
        names = [description[0] for description in cursor.description]
        cells = [dict(zip(names, values)) for values in cursor]
    fields = set(embargo.masked_fields(template, rule or embargo.load_rule(run_dir)))
    boxes: dict[int, list[embargo.Box]] = {}
    for cell in cells:
        for box in embargo.hidden_boxes([cell], wanted, fields):
            boxes.setdefault(cell["row"], []).append(box)
    return boxes
