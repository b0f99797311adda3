"""Exports: typed, partitioned CSV/Parquet, JSON Lines, PAGE XML 2019, ALTO v4 and the codebook,
on a generated run (current values include reviewers' corrections)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from lxml import etree

from pipeline.dataset import datagen
from pipeline.run import store
from pipeline.errors import UsageError
from pipeline.dataset.export import ALTO_NS, export

PAGES = 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export-run")
    datagen.generate_run(folder, pages=PAGES, seed=21)
    (folder / "embargo.yaml").write_text("years: 0\n", encoding="utf-8")  # nothing embargoed here
    return folder


def _store_rows(run_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        return connection.execute(sql).fetchall()


def test_parquet_is_typed_and_partitioned_by_register_and_year(run_dir: Path, tmp_path: Path):
    report = export(run_dir, "parquet", tmp_path)
    part = tmp_path / "persons" / "register=padro-catala-1930" / "year=1930" / "part-0.parquet"
    assert part.is_file() and (tmp_path / "households" / "register=padro-catala-1930").is_dir()
    table = ds.dataset(tmp_path / "persons", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == report.persons == _store_rows(run_dir, "SELECT COUNT(*) FROM persons")[0][0]
    assert table.schema.field("age").type == pa.int32()
    assert table.schema.field("residence_years").type == pa.int32()
    assert table.schema.field("birth_date").type == pa.string()
    assert table.schema.field("restricted").type == pa.bool_()
    households = ds.dataset(tmp_path / "households", format="parquet", partitioning="hive").to_table()
    assert households.num_rows == report.households
    assert sum(households["size"].to_pylist()) == table.num_rows


def test_households_have_head_size_members_and_relations(run_dir: Path, tmp_path: Path):
    export(run_dir, "jsonl", tmp_path)
    households = [json.loads(line) for line in (tmp_path / "households.jsonl").open(encoding="utf-8")]
    truth = _store_rows(run_dir, "SELECT household_id, COUNT(*) FROM persons GROUP BY household_id")
    assert {h["household_id"]: h["size"] for h in households} == dict(truth)
    headed = [h for h in households if h["head_person_id"]]
    assert len(headed) == len(households)  # datagen households all have a head
    for household in headed:
        members = json.loads(household["members"])
        assert members[0]["relation"] == "head" and household["head_name"] == members[0]["name"]
        assert household["relations"].split(",") == [m["relation"] for m in members]


def test_household_flags_come_from_the_fields_stage_reasons(run_dir: Path, tmp_path: Path):
    page_id, row, household_id = _store_rows(
        run_dir,
        "SELECT page_id, row, household_id FROM persons WHERE relation IN ('son', 'daughter') LIMIT 1",
    )[0]
    with store.connect(run_dir) as connection:
        connection.execute(
            'UPDATE cells SET reasons = \'["child-older-than-parent", "low-confidence"]\' '
            "WHERE page_id = ? AND row = ? AND field IN ('age', 'relation')",
            (page_id, row),
        )
        store.refresh_row_stats(connection, page_id)  # what the store does when the fields stage writes reasons
        connection.commit()
    export(run_dir, "jsonl", tmp_path)
    households = {h["household_id"]: h for h in map(json.loads, (tmp_path / "households.jsonl").open())}
    flagged = households.pop(household_id)
    assert json.loads(flagged["flags"]) == ["child-older-than-parent"]
    assert (
        flagged["size"]
        == len(json.loads(flagged["members"]))
        == _store_rows(run_dir, f"SELECT COUNT(*) FROM persons WHERE household_id = '{household_id}'")[0][0]
    )
    assert all(json.loads(h["flags"]) == [] for h in households.values())
    persons = [json.loads(line) for line in (tmp_path / "persons.jsonl").open()]
    assert [p["consistency_flags"] for p in persons if p["consistency_flags"]] == ["child-older-than-parent"]


def test_csv_rows_match_the_store(run_dir: Path, tmp_path: Path):
    export(run_dir, "csv", tmp_path)
    path = tmp_path / "persons" / "register=padro-catala-1930" / "year=1930" / "part-0.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    names = {name for (name,) in _store_rows(run_dir, "SELECT name FROM persons")}
    assert {row["name"] for row in rows} == names
    assert (tmp_path / "codebook.json").is_file() and (tmp_path / "codebook.md").is_file()


def test_corrections_are_the_current_values(run_dir: Path, tmp_path: Path):
    cell_id, page_id = _store_rows(
        run_dir, "SELECT cell_id, page_id FROM cells WHERE field = 'age' AND text != '' LIMIT 1"
    )[0]
    with store.connect(run_dir) as connection:
        connection.execute(
            "INSERT INTO corrections (cell_id, old_value, new_value, new_status, reviewer, corrected_at, "
            "source) "
            "VALUES (?, NULL, '77', 'corrected', 'tester', '2026-02-02T00:00:00', 'test')",
            (cell_id,),
        )
        store.reapply_corrections(connection, page_id)
        connection.commit()
    export(run_dir, "jsonl", tmp_path)
    persons = {
        p["person_id"]: p for p in map(json.loads, (tmp_path / "persons.jsonl").open(encoding="utf-8"))
    }
    row = int(cell_id.split(":r")[1].split(":")[0])
    person = persons[f"{page_id}:r{row}"]
    assert person["age"] == 77 and person["cells_corrected"] == 1
    # the cached per-row cell statistics were refreshed, not reused, after the store changed
    assert (run_dir / "index" / "cell_stats.parquet").is_file()


def test_page_xml_holds_a_table_with_cells_and_text(run_dir: Path, tmp_path: Path):
    from pipeline.pagexml import read_table_groundtruth

    report = export(run_dir, "pagexml", tmp_path)
    assert report.pages == PAGES
    page_id, n_cells = _store_rows(run_dir, "SELECT page_id, COUNT(*) FROM cells GROUP BY page_id LIMIT 1")[0]
    table = read_table_groundtruth(tmp_path / f"{page_id}.xml")
    assert len(table.cells) == n_cells and (tmp_path / table.image_filename).is_file()
    stored = {
        (r, c): t
        for r, c, t in _store_rows(run_dir, f"SELECT row, col, text FROM cells WHERE page_id = '{page_id}'")
    }
    assert {(cell.row, cell.col): cell.text for cell in table.cells} == stored


def test_alto_v4_has_a_string_per_written_cell(run_dir: Path, tmp_path: Path):
    export(run_dir, "alto", tmp_path)
    page_id, written = _store_rows(
        run_dir, "SELECT page_id, SUM(text != '') FROM cells GROUP BY page_id LIMIT 1"
    )[0]
    root = etree.parse(str(tmp_path / f"{page_id}.alto.xml")).getroot()
    assert root.tag == f"{{{ALTO_NS}}}alto"
    strings = root.findall(f".//{{{ALTO_NS}}}String")
    assert len(strings) == written
    assert all(0 <= float(s.get("WC")) <= 1 and int(s.get("WIDTH")) > 0 for s in strings)


def test_codebook_describes_every_column(run_dir: Path, tmp_path: Path):
    export(run_dir, "codebook", tmp_path)
    book = json.loads((tmp_path / "codebook.json").read_text(encoding="utf-8"))
    export(run_dir, "parquet", tmp_path / "pq")
    columns = ds.dataset(tmp_path / "pq" / "persons", format="parquet").schema.names
    described = {entry["column"]: entry for entry in book["persons"]}
    assert set(columns) <= set(described)
    assert "head" in described["relation"]["vocabulary"] and described["name"]["embargoed"]
    assert described["confidence"]["source"] == "provenance" and described["confidence"]["description"]
    assert "| relation |" in (tmp_path / "codebook.md").read_text(encoding="utf-8")


def test_unknown_format_is_a_usage_error(run_dir: Path, tmp_path: Path):
    with pytest.raises(UsageError):
        export(run_dir, "xlsx", tmp_path)


def test_cli_export_prints_a_json_report(run_dir: Path, tmp_path: Path):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "export",
            str(run_dir),
            "--format",
            "jsonl",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["persons"] > 0
