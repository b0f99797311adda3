"""`census browse` / `make browse`: a datasette web view of a run, on 127.0.0.1 only.

Datasette serves a *masked copy* of the store (RUN_DIR/browse/census-browse.sqlite), built
from the embargo-masked persons and households, so neither its pages nor its SQL editor can
reach restricted values. The copy has facets (sex, relation, birth place, occupation, marital
status, year), FTS5 full-text search over names, places, addresses and occupations, and a
`crop` column linking each person to the image of its register row; the crops are cut on
demand by the plugin in pipeline/dataset/browse/ and refused for restricted persons.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from pipeline.dataset import dataset, embargo
from pipeline.dataset.export import households_table

BROWSE_DIR = "browse"
DB_NAME = "census-browse"
PLUGINS_DIR = Path(__file__).parent / "browse"
FACETS = ["sex", "relation", "birth_place", "occupation", "marital_status", "year"]
SEARCHABLE = ["name", "birth_place", "address", "occupation"]
PERSON_COLUMNS = [
    "person_id",
    "page_id",
    "row",
    "year",
    "household_id",
    "name",
    "relation",
    "sex",
    "age",
    "birth_date",
    "birth_year",
    "birth_place",
    "marital_status",
    "occupation",
    "literacy",
    "address",
    "residence_years",
    "confidence",
    "cells_needs_review",
    "cells_corrected",
    "restricted",
]


def browse_db_path(run_dir: Path) -> Path:
    return Path(run_dir) / BROWSE_DIR / f"{DB_NAME}.sqlite"


def _sqlite_type(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return "INTEGER"
    return "REAL" if pa.types.is_floating(kind) else "TEXT"


def _write_table(connection: sqlite3.Connection, name: str, table: pa.Table, primary_key: str) -> None:
    columns = ", ".join(
        f"{field.name} {_sqlite_type(field.type)}{' PRIMARY KEY' if field.name == primary_key else ''}"
        for field in table.schema
    )
    connection.execute(f"CREATE TABLE {name} ({columns})")
    placeholders = ",".join("?" * table.num_columns)
    for batch in table.to_batches(max_chunksize=50_000):
        connection.executemany(
            f"INSERT INTO {name} VALUES ({placeholders})",
            zip(*(column.to_pylist() for column in batch.columns)),
        )


def build_browse_db(run_dir: Path) -> Path:
    """Write the masked copy datasette serves (replaced atomically); returns its path."""
    run_dir = Path(run_dir)
    data = dataset.load(run_dir, include_restricted=False)
    persons = data.persons
    columns = [name for name in PERSON_COLUMNS if name in persons.column_names]
    crops = pa.array(
        [
            None if restricted else f"/-/crop/{person_id}"
            for person_id, restricted in zip(
                persons["person_id"].to_pylist(), persons["restricted"].to_pylist()
            )
        ],
        pa.string(),
    )
    table = persons.select(columns).add_column(1, "crop", crops)  # first thing after the id: the row image
    target = browse_db_path(run_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as connection:
        _write_table(connection, "persons", table, "person_id")
        households = households_table(persons, data.report.masked_fields)
        _write_table(connection, "households", households, "household_id")
        searchable = [name for name in SEARCHABLE if name in columns]
        connection.execute(
            f"CREATE VIRTUAL TABLE persons_fts USING fts5({', '.join(searchable)}, "
            'content="persons", content_rowid="rowid", tokenize=\'unicode61 remove_diacritics 2\')'
        )
        connection.execute("INSERT INTO persons_fts(persons_fts) VALUES ('rebuild')")
        for facet in (name for name in FACETS if name in columns):
            connection.execute(f"CREATE INDEX persons_{facet} ON persons({facet})")
        connection.execute("CREATE TABLE embargo (rule TEXT, restricted INTEGER, masked_fields TEXT)")
        connection.execute(
            "INSERT INTO embargo VALUES (?, ?, ?)",
            (data.report.rule, data.report.restricted, json.dumps(data.report.masked_fields)),
        )
    tmp.replace(target)
    return target


def metadata(run_dir: Path) -> dict:
    """Datasette metadata: titles, facets, search, and the crop plugin's run directory."""
    return {
        "title": f"Census register: {Path(run_dir).resolve().name}",
        "description": "Reviewed register rows. Persons under the privacy embargo have their names, dates "
        "and addresses withheld.",
        "databases": {
            DB_NAME: {
                "tables": {
                    "persons": {
                        "facets": FACETS,
                        "fts_table": "persons_fts",
                        "fts_pk": "rowid",
                        "searchmode": "raw",
                        "sort": "person_id",
                        "label_column": "name",
                    },
                    "households": {"facets": ["size", "year"], "label_column": "head_name"},
                    "persons_fts": {"hidden": True},
                }
            }
        },
        "plugins": {
            "census-crops": {
                "run_dir": str(Path(run_dir).resolve()),
                "browse_db": str(browse_db_path(run_dir).resolve()),
            }
        },
    }


def datasette_command(run_dir: Path, port: int) -> list[str]:
    """Build the masked copy and its metadata; the datasette command line serving them."""
    database = build_browse_db(run_dir)
    meta_path = database.parent / "metadata.json"
    meta_path.write_text(json.dumps(metadata(run_dir), indent=1), encoding="utf-8")
    return [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metadata",
        str(meta_path),
        "--plugins-dir",
        str(PLUGINS_DIR),
        "--immutable",
        str(database),
        "--setting",
        "default_page_size",
        "50",
        "--setting",
        "sql_time_limit_ms",
        "3000",
    ]


def serve(run_dir: Path, port: int = 8001) -> int:
    """Serve until interrupted; returns datasette's exit status."""
    if shutil.which("datasette") is None and not (Path(sys.executable).parent / "datasette").exists():
        from pipeline.errors import UsageError

        raise UsageError("datasette is not installed in this environment (pip install -r requirements.txt)")
    command = datasette_command(run_dir, port)
    print(f"browse: http://127.0.0.1:{port}/{DB_NAME}/persons  (Ctrl-C to stop)", file=sys.stderr)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def embargo_summary(run_dir: Path) -> dict | None:
    """The last embargo report of the run, for the run report."""
    return embargo.read_report(run_dir)
