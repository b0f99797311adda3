"""Exports of a run for historians' tools, all masked by the embargo unless include_restricted:

- `csv` / `parquet`: persons and households, typed, one file per register/year partition
  (`persons/register=<name>/year=<year>/part-0.<ext>`, Hive style, so DuckDB/Arrow/pandas read
  the folder as one dataset);
- `jsonl`: persons.jsonl and households.jsonl;
- `pagexml`: one PAGE XML 2019 file per page (TableRegion/TableCell row/col, TextLine/TextEquiv),
  written with pipeline.pagexml, plus the page image with restricted cells blanked;
- `alto`: one ALTO v4 file per page (a TextBlock per cell, String CONTENT + WC confidence);
- `codebook`: the data dictionary (every column, its type, vocabulary, provenance);
- `training`: reviewed cell crops for the next model (review.training.export_training);
- `all`: every format above except training, in sub-folders.
Each export also writes codebook.json/.md and the embargo report beside the data.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from pipeline.dataset import dataset, embargo
from pipeline.errors import UsageError
from pipeline.dataset.households import HOUSEHOLD_REASONS
from pipeline.run.paths import make_folder
from pipeline.stages.templates import Template

FORMATS = ("csv", "parquet", "jsonl", "pagexml", "alto", "codebook", "training", "all")
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA = "http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"


class ExportReport(BaseModel):
    format: str
    out: str
    files: list[str] = Field(default_factory=list)
    persons: int = 0
    households: int = 0
    pages: int = 0
    cells: int = 0  # training: reviewed cells exported
    restricted: int = 0
    masked_values: int = 0
    masked_cells: int = 0
    include_restricted: bool = False
    seconds: float = 0.0


# --- households -------------------------------------------------------------------------------

HOUSEHOLDS_SQL = """
WITH found AS (
    SELECT household_id, to_json(list(DISTINCT flag ORDER BY flag))::VARCHAR AS flags
    FROM (SELECT household_id, unnest(string_split(consistency_flags, ',')) AS flag
          FROM persons WHERE consistency_flags IS NOT NULL)
    GROUP BY household_id),
households AS (
    SELECT household_id, any_value(register) AS register, any_value(year)::INTEGER AS year,
           any_value(page_id) AS page_id, min(row)::INTEGER AS first_row, count(*)::INTEGER AS size,
           first(person_id ORDER BY row) FILTER (WHERE relation = 'head') AS head_person_id,
           first(name ORDER BY row) FILTER (WHERE relation = 'head') AS head_name,
           coalesce(first(address ORDER BY row) FILTER (WHERE relation = 'head'), first(address ORDER BY row))
               AS address,
           string_agg(coalesce(relation, '?'), ',' ORDER BY row) AS relations,
           to_json(list({'person_id': person_id, 'row': row, 'relation': relation, 'name': name,
                         'sex': sex, 'age': age} ORDER BY row))::VARCHAR AS members,
           sum(restricted::INTEGER)::INTEGER AS restricted_members
    FROM persons WHERE household_id IS NOT NULL GROUP BY household_id)
SELECT h.* EXCLUDE (restricted_members) REPLACE (<address> AS address), coalesce(found.flags, '[]') AS flags,
       h.restricted_members
FROM households h LEFT JOIN found USING (household_id) ORDER BY household_id
"""


# A household's address is every member's: shown only when no member is restricted.
SHARED_ADDRESS = "CASE WHEN h.restricted_members = 0 THEN h.address END"


def households_table(persons: pa.Table, masked_fields: Iterable[str]) -> pa.Table:
    """One row per household: head, size, address, members with relations, flags.
    Built from the (already masked) persons table, so names, ages and the head follow the
    persons' rule; the address, shared by all members, is withheld when any member is
    restricted and the embargo masks addresses (`masked_fields`: [] when include_restricted)."""
    import duckdb

    needed = [
        "household_id",
        "register",
        "year",
        "page_id",
        "row",
        "person_id",
        "name",
        "relation",
        "sex",
        "age",
        "address",
        "restricted",
        "consistency_flags",
    ]
    connection = duckdb.connect()
    try:
        connection.register("persons", persons.select([c for c in needed if c in persons.column_names]))
        address = SHARED_ADDRESS if "address" in set(masked_fields) else "h.address"
        return connection.sql(HOUSEHOLDS_SQL.replace("<address>", address)).to_arrow_table()
    finally:
        connection.close()


# --- cells ------------------------------------------------------------------------------------


def page_cells(connection: sqlite3.Connection, page_id: str) -> list[sqlite3.Row]:
    connection.row_factory = sqlite3.Row
    return connection.execute(
        "SELECT * FROM cells WHERE page_id = ? ORDER BY row, col", (page_id,)
    ).fetchall()


def _visible_text(cell: sqlite3.Row, restricted: set[tuple[str, int]], fields: set[str]) -> str:
    if (cell["page_id"], cell["row"]) in restricted and embargo.masked_cell(cell["field"], fields):
        return ""
    return cell["text"] or ""


# --- tabular formats --------------------------------------------------------------------------


def _partitions(table: pa.Table) -> list[tuple[str, int | None, pa.Table]]:
    keys = table.group_by(["register", "year"]).aggregate([]).to_pylist()
    parts = []
    for key in sorted(keys, key=lambda k: (k["register"], k["year"] is None, k["year"] or 0)):
        mask = pc.and_(
            pc.equal(table["register"], key["register"]),
            pc.is_null(table["year"]) if key["year"] is None else pc.equal(table["year"], key["year"]),
        )
        parts.append((key["register"], key["year"], table.filter(mask) if len(keys) > 1 else table))
    return parts


def write_partitioned(table: pa.Table, folder: Path, fmt: str) -> list[Path]:
    """Hive-style partitions register=<name>/year=<year>/part-0.<fmt>."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    written = []
    for register, year, part in _partitions(table):
        directory = folder / f"register={register}" / f"year={year if year is not None else 'unknown'}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"part-0.{fmt}"
        if fmt == "parquet":
            pq.write_table(part, path, compression="zstd")
        else:
            pacsv.write_csv(part, path)
        written.append(path)
    return written


def write_jsonl(table: pa.Table, path: Path, batch_rows: int = 50_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for batch in table.to_batches(max_chunksize=batch_rows):
            for record in batch.to_pylist():
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


# --- codebook ---------------------------------------------------------------------------------


def codebook(template: Template, rule: embargo.EmbargoRule, persons_schema: pa.Schema) -> dict[str, Any]:
    """Data dictionary of the persons and households exports."""
    fields = {column.key: column for column in template.columns}
    masked = set(embargo.masked_fields(template, rule))
    entries = []
    for field in persons_schema:
        column = fields.get(field.name)
        entry: dict[str, Any] = {"column": field.name, "type": str(field.type)}
        if column:
            entry.update(
                label=column.label,
                field_type=column.type,
                headers=column.headers,
                source="register cell: the reviewed value when corrected, else the machine reading "
                "(ditto marks resolved, lexicon-snapped)",
            )
            if column.vocabulary:
                entry["vocabulary"] = column.vocabulary
            if column.lexicon:
                entry["lexicon"] = column.lexicon
            if column.type == "date":
                entry["format"] = "ISO 8601: YYYY-MM-DD, YYYY-MM or YYYY"
        else:
            entry.update(source="provenance", description=dataset.PROVENANCE_COLUMNS.get(field.name, ""))
        entry["embargoed"] = field.name in masked or field.name == "birth_year"
        entries.append(entry)
    return {
        "register": template.name,
        "description": template.description.strip(),
        "language": template.language,
        "register_year": template.register_year,
        "embargo": rule.describe(),
        "persons": entries,
        "households": [
            {"column": "household_id", "type": "string", "description": "'<page_id>:h<n>'"},
            {"column": "register", "type": "string"},
            {"column": "year", "type": "int32"},
            {"column": "page_id", "type": "string"},
            {"column": "first_row", "type": "int32"},
            {"column": "size", "type": "int32", "description": "number of persons"},
            {"column": "head_person_id", "type": "string"},
            {
                "column": "head_name",
                "type": "string",
                "embargoed": True,
                "description": "masked by the persons' rule: withheld when the head is restricted",
            },
            {
                "column": "address",
                "type": "string",
                "embargoed": True,
                "description": "the head's (else the first member's) address; withheld for the whole "
                "household when any member is restricted, since members share it",
            },
            {"column": "relations", "type": "string", "description": "members' relations in row order"},
            {
                "column": "members",
                "type": "string",
                "description": "JSON list of {person_id,row,relation,name,sex,age}; each member's name and "
                "age masked by the persons' rule",
            },
            {
                "column": "flags",
                "type": "string",
                "description": f"JSON list of household review reasons: {', '.join(HOUSEHOLD_REASONS)}",
            },
            {"column": "restricted_members", "type": "int32", "description": "members under embargo"},
        ],
    }


def codebook_markdown(book: dict[str, Any]) -> str:
    lines = [
        f"# Codebook: {book['register']}",
        "",
        book["description"],
        "",
        f"Register year: {book['register_year']}. Embargo: {book['embargo']}.",
        "",
        "## persons",
        "",
        "| column | type | label / description | vocabulary | embargoed |",
        "|---|---|---|---|---|",
    ]
    for entry in book["persons"]:
        vocabulary = ", ".join(entry.get("vocabulary", {}))
        label = entry.get("label") or entry.get("description", "")
        lines.append(
            f"| {entry['column']} | {entry['type']} | {label} | {vocabulary} | "
            f"{'yes' if entry.get('embargoed') else ''} |"
        )
    lines += ["", "## households", "", "| column | type | description |", "|---|---|---|"]
    lines += [f"| {e['column']} | {e['type']} | {e.get('description', '')} |" for e in book["households"]]
    return "\n".join(lines) + "\n"


def write_codebook(out: Path, template: Template, rule: embargo.EmbargoRule, schema: pa.Schema) -> list[Path]:
    book = codebook(template, rule, schema)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "codebook.json", out / "codebook.md"
    json_path.write_text(json.dumps(book, ensure_ascii=False, indent=2), encoding="utf-8")
    md_path.write_text(codebook_markdown(book), encoding="utf-8")
    return [json_path, md_path]


# --- page formats -----------------------------------------------------------------------------


def _pages(connection: sqlite3.Connection) -> list[sqlite3.Row]:
    connection.row_factory = sqlite3.Row
    return connection.execute("SELECT * FROM pages WHERE status = 'done' ORDER BY page_id").fetchall()


def _box(cell: sqlite3.Row) -> list[tuple[int, int]]:
    x0, y0, x1, y1 = cell["x0"], cell["y0"], cell["x1"], cell["y1"]
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def redacted_image(run_dir: Path, page_id: str, boxes: list[embargo.Box], target: Path) -> Path | None:
    """Copy the page image, painting over restricted cells so the handwriting cannot be read."""
    source = Path(run_dir) / "images" / f"{page_id}.jpg"
    if not source.is_file():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    if not boxes:
        shutil.copyfile(source, target)
        return target
    import numpy as np
    from PIL import Image

    with Image.open(source) as image:
        pixels = np.array(image.convert("L"))
    Image.fromarray(embargo.redact(pixels, boxes)).save(target, quality=90)
    return target


def write_page_formats(
    run_dir: Path,
    out: Path,
    fmt: str,
    persons: pa.Table,
    template: Template,
    rule: embargo.EmbargoRule,
    include_restricted: bool,
) -> tuple[list[Path], int, int]:
    """PAGE XML or ALTO per page (+ redacted images); returns (files, pages, masked cells)."""
    from pipeline import pagexml

    restricted = set() if include_restricted else embargo.restricted_rows(persons)
    fields = set(embargo.masked_fields(template, rule))
    files, masked, pages = [], 0, 0
    out.mkdir(parents=True, exist_ok=True)
    with dataset.readonly(dataset.store_path(run_dir)) as connection:
        for page in _pages(connection):
            cells = page_cells(connection, page["page_id"])
            hidden = [cell for cell in cells if cell["text"] and not _visible_text(cell, restricted, fields)]
            masked += len(hidden)
            image = redacted_image(
                run_dir,
                page["page_id"],
                embargo.hidden_boxes(cells, restricted, fields),
                out / f"{page['page_id']}.jpg",
            )
            image_name = image.name if image else Path(page["source"]).name
            if fmt == "pagexml":
                table = pagexml.TableGroundTruth(
                    image_filename=image_name,
                    width=page["width"],
                    height=page["height"],
                    header_rows=0,
                    skew_deg=page["skew_deg"] or 0.0,
                    cells=[
                        pagexml.GTCell(
                            row=c["row"],
                            col=c["col"],
                            polygon=_box(c),
                            text=_visible_text(c, restricted, fields),
                        )
                        for c in cells
                    ],
                )
                files.append(pagexml.write_page_xml(out / f"{page['page_id']}.xml", table))
            else:
                path = out / f"{page['page_id']}.alto.xml"
                path.write_bytes(alto_bytes(page, cells, image_name, restricted, fields))
                files.append(path)
            if image:
                files.append(image)
            pages += 1
    return files, pages, masked


def alto_bytes(
    page: sqlite3.Row,
    cells: list[sqlite3.Row],
    image_name: str,
    restricted: set[tuple[str, int]],
    fields: set[str],
) -> bytes:
    """ALTO v4: a TextBlock per non-empty cell (tagged with its row/col), one TextLine, one String."""
    from lxml import etree

    xsi = "http://www.w3.org/2001/XMLSchema-instance"
    root = etree.Element(f"{{{ALTO_NS}}}alto", nsmap={None: ALTO_NS, "xsi": xsi})
    root.set(f"{{{xsi}}}schemaLocation", f"{ALTO_NS} {ALTO_SCHEMA}")
    description = etree.SubElement(root, f"{{{ALTO_NS}}}Description")
    etree.SubElement(description, f"{{{ALTO_NS}}}MeasurementUnit").text = "pixel"
    source = etree.SubElement(description, f"{{{ALTO_NS}}}sourceImageInformation")
    etree.SubElement(source, f"{{{ALTO_NS}}}fileName").text = image_name
    layout = etree.SubElement(root, f"{{{ALTO_NS}}}Layout")
    page_element = etree.SubElement(
        layout,
        f"{{{ALTO_NS}}}Page",
        ID=f"page_{page['page_id']}",
        WIDTH=str(page["width"]),
        HEIGHT=str(page["height"]),
        PHYSICAL_IMG_NR="1",
    )
    space = etree.SubElement(
        page_element,
        f"{{{ALTO_NS}}}PrintSpace",
        HPOS="0",
        VPOS="0",
        WIDTH=str(page["width"]),
        HEIGHT=str(page["height"]),
    )
    for cell in cells:
        text = _visible_text(cell, restricted, fields)
        if not text:
            continue
        geometry = {
            "HPOS": str(cell["x0"]),
            "VPOS": str(cell["y0"]),
            "WIDTH": str(cell["x1"] - cell["x0"]),
            "HEIGHT": str(cell["y1"] - cell["y0"]),
        }
        ident = f"r{cell['row']}_c{cell['col']}"
        block = etree.SubElement(space, f"{{{ALTO_NS}}}TextBlock", ID=f"block_{ident}", **geometry)
        line = etree.SubElement(block, f"{{{ALTO_NS}}}TextLine", ID=f"line_{ident}", **geometry)
        etree.SubElement(
            line,
            f"{{{ALTO_NS}}}String",
            ID=f"string_{ident}",
            CONTENT=text,
            WC=f"{cell['confidence']:.3f}",
            **geometry,
        )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- entry point ------------------------------------------------------------------------------


def export(run_dir: Path, fmt: str, out: Path, include_restricted: bool = False) -> ExportReport:
    """Export the run in `fmt` under the folder `out`."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    start = time.perf_counter()
    make_folder(out)
    rule = embargo.load_rule(run_dir)
    if fmt == "training":
        return _export_training(run_dir, out, rule, include_restricted, start)
    data = dataset.load(run_dir, include_restricted=include_restricted, rule=rule)
    report = ExportReport(
        format=fmt,
        out=str(out),
        persons=data.persons.num_rows,
        restricted=data.report.restricted,
        masked_values=data.report.masked_values,
        include_restricted=include_restricted,
    )
    files = write_codebook(out, data.template, rule, data.persons.schema)
    for name in ["csv", "parquet", "jsonl", "pagexml", "alto"] if fmt == "all" else [fmt]:
        files += _write_format(run_dir, out / name if fmt == "all" else out, name, data, rule, report)
    report_path = out / embargo.REPORT_NAME
    report_path.write_text(
        data.report.model_copy(update={"masked_cells": report.masked_cells}).model_dump_json(
            indent=2, exclude={"restricted_person_ids"}
        ),
        encoding="utf-8",
    )
    report.files = [str(path) for path in [*files, report_path]]
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _export_training(
    run_dir: Path, out: Path, rule: embargo.EmbargoRule, include_restricted: bool, start: float
) -> ExportReport:
    """Reviewed cell crops for training (review.training); restricted persons' masked cells are
    removed from it unless include_restricted, like from every other export."""
    from review.training import export_training

    count = export_training(run_dir, out)
    masked = 0
    if not include_restricted:
        data = dataset.load(run_dir, rule=rule, write_report=False)
        restricted = embargo.restricted_rows(data.persons)
        fields = set(embargo.masked_fields(data.template, rule))
        manifest = out / "manifest.jsonl"
        kept = []
        for line in manifest.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            row = int(entry["cell_id"].rsplit(":r", 1)[1].split(":")[0])
            if (entry["page_id"], row) in restricted and embargo.masked_cell(entry["field"], fields):
                (out / entry["image"]).unlink(missing_ok=True)
                (out / entry["image"]).with_suffix(".gt.txt").unlink(missing_ok=True)
                masked += 1
            else:
                kept.append(line)
        manifest.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return ExportReport(
        format="training",
        out=str(out),
        cells=count - masked,
        masked_cells=masked,
        include_restricted=include_restricted,
        files=[str(out / "manifest.jsonl")],
        seconds=round(time.perf_counter() - start, 3),
    )


def _write_format(
    run_dir: Path, out: Path, fmt: str, data: dataset.Dataset, rule: embargo.EmbargoRule, report: ExportReport
) -> list[Path]:
    if fmt in {"pagexml", "alto"}:
        files, pages, masked = write_page_formats(
            run_dir, out, fmt, data.persons, data.template, rule, report.include_restricted
        )
        report.pages, report.masked_cells = pages, report.masked_cells + masked
        return files
    if fmt == "codebook":
        return []
    households = households_table(data.persons, data.report.masked_fields)
    report.households = households.num_rows
    if fmt == "jsonl":
        return [
            write_jsonl(data.persons, out / "persons.jsonl"),
            write_jsonl(households, out / "households.jsonl"),
        ]
    return [
        *write_partitioned(data.persons, out / "persons", fmt),
        *write_partitioned(households, out / "households", fmt),
    ]
