"""Generator of realistic register datasets written straight into a run store, without
rendering or recognising pages: coherent households (head, spouse, children taking their
parents' surnames, elders, servants, lodgers) with Catalan/Spanish names from the project
lexicons, birth dates consistent with ages and the register year, cells with literal text
(ditto marks, abbreviations) and confidences, and optional page images so crops work.

Two paths: `generate_run` builds PageResult objects and writes them through `store.write_page`
(small test stores, with page images); `generate_bulk` inserts a million persons with
executemany in large transactions (benchmarks). Both are deterministic for a seed.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.run import store
from pipeline.lexicons import load_lexicon
from pipeline.models import BBox, Cell, PageInfo, PageResult, Person
from pipeline.stages.templates import Template, load_template

ROWS_PER_PAGE = 30
PAGE_WIDTH, HEADER_HEIGHT, ROW_HEIGHT, MARGIN = 3000, 220, 64, 60
# Relative column widths in page pixels (fields of the shipped templates).
COLUMN_WIDTHS = {
    "name": 520,
    "relation": 200,
    "sex": 90,
    "age": 90,
    "birth_date": 240,
    "birth_place": 300,
    "marital_status": 180,
    "occupation": 300,
    "literacy": 170,
    "address": 420,
    "residence_years": 130,
}
LITERALS = {  # canonical value -> how clerks wrote it (Catalan, Spanish)
    "relation": {
        "head": ("cap", "jefe"),
        "spouse": ("muller", "esposa"),
        "son": ("fill", "hijo"),
        "daughter": ("filla", "hija"),
        "mother": ("mare", "madre"),
        "father": ("pare", "padre"),
        "brother": ("germà", "hermano"),
        "sister": ("germana", "hermana"),
        "grandson": ("nét", "nieto"),
        "granddaughter": ("néta", "nieta"),
        "nephew": ("nebot", "sobrino"),
        "niece": ("neboda", "sobrina"),
        "servant": ("criada", "sirvienta"),
        "lodger": ("hostatger", "huésped"),
    },
    "sex": {"M": ("H", "V"), "F": ("D", "M")},
    "marital_status": {
        "single": ("solter", "soltero"),
        "married": ("casat", "casado"),
        "widowed": ("vidu", "viudo"),
    },
    "literacy": {"reads_writes": ("sí", "sí"), "reads": ("llegeix", "lee"), "none": ("no", "no")},
}
HOME_OCCUPATIONS = ("sus labores", "feines de casa", "la casa")
CHILD_OCCUPATIONS = ("estudiant", "escolar")


class Weighted:
    """A lexicon with Zipf-like frequencies (entries are listed most frequent first)."""

    def __init__(self, entries: list[str], exponent: float = 0.7) -> None:
        self.entries = entries
        weights = [1.0 / (rank + 1) ** exponent for rank in range(len(entries))]
        self.cumulative = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> str:
        return self.entries[bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])]


@dataclass
class Lexicons:
    men: Weighted
    women: Weighted
    surnames: Weighted
    places: Weighted
    occupations: Weighted
    streets: Weighted

    @classmethod
    def load(cls, language: str) -> Lexicons:
        lang = "es" if language == "es" else "ca"
        other = "ca" if lang == "es" else "es"
        # Registers mix both languages' names, the register's own language dominating.
        men = load_lexicon(f"given_names_{lang}_m") + load_lexicon(f"given_names_{other}_m")[:40]
        women = load_lexicon(f"given_names_{lang}_f") + load_lexicon(f"given_names_{other}_f")[:40]
        surnames = list(
            dict.fromkeys(
                itertools.chain.from_iterable(
                    zip(load_lexicon(f"surnames_{lang}"), load_lexicon(f"surnames_{other}"))
                )
            )
        )
        workers = [o for o in load_lexicon("occupations") if o not in HOME_OCCUPATIONS + CHILD_OCCUPATIONS]
        return cls(
            Weighted(men),
            Weighted(women),
            Weighted(surnames, 0.6),
            Weighted(load_lexicon("places"), 1.0),
            Weighted(workers, 0.8),
            Weighted(load_lexicon("streets"), 0.5),
        )


@dataclass
class Member:
    """One generated person before it becomes a row: typed values plus its household."""

    values: dict[str, Any]
    household: int
    literal: dict[str, str] = field(default_factory=dict)


def _full_name(given: str, first: str, second: str, language: str, rng: random.Random) -> str:
    conjunction = " y " if language == "es" else " i "
    return f"{given} {first}{conjunction if rng.random() < 0.6 else ' '}{second}"


def _birth_date(rng: random.Random, register_year: int, age: int) -> str:
    year = register_year - age - (1 if rng.random() < 0.4 else 0)
    return f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _person(
    rng: random.Random,
    lex: Lexicons,
    register_year: int,
    language: str,
    relation: str,
    sex: str,
    age: int,
    surnames: tuple[str, str],
    address: str,
    household: int,
    married: bool = False,
) -> Member:
    given = (lex.men if sex == "M" else lex.women).pick(rng)
    if relation == "spouse" or (relation == "head" and married):
        marital = "married"
    elif relation in {"head", "father", "mother"} or age >= 18:
        marital = "widowed" if age > 50 and rng.random() < 0.5 else "single"
    else:
        marital = "single"
    if age < 6:
        occupation = None
    elif age < 14:
        occupation = rng.choice(CHILD_OCCUPATIONS)
    elif sex == "F" and relation in {"spouse", "head", "mother", "daughter"} and rng.random() < 0.7:
        occupation = rng.choice(HOME_OCCUPATIONS)
    else:
        occupation = lex.occupations.pick(rng)
    values = {
        "name": _full_name(given, surnames[0], surnames[1], language, rng),
        "relation": relation,
        "sex": sex,
        "age": age,
        "birth_date": _birth_date(rng, register_year, age) if rng.random() < 0.85 else None,
        "birth_place": lex.places.pick(rng),
        "marital_status": marital,
        "occupation": occupation,
        "literacy": None if age < 7 else rng.choices(["reads_writes", "reads", "none"], [6, 1, 3])[0],
        "address": address,
        "residence_years": rng.randint(0, age) if age else 0,
    }
    return Member(values=values, household=household)


def household(
    rng: random.Random, lex: Lexicons, register_year: int, language: str, number: int
) -> list[Member]:
    """One coherent household in register order: head, spouse, children, elders, others."""
    address = f"{lex.streets.pick(rng)}, {rng.randint(1, 140)}"
    head_sex = "M" if rng.random() < 0.85 else "F"
    head_age = rng.randint(24, 78)
    father = (lex.surnames.pick(rng), lex.surnames.pick(rng))
    mother = (lex.surnames.pick(rng), lex.surnames.pick(rng))
    head_names = father if head_sex == "M" else mother
    spouse_names = mother if head_sex == "M" else father

    married = head_sex == "M" and rng.random() < 0.85

    def add(relation: str, sex: str, age: int, names: tuple[str, str]) -> None:
        members.append(
            _person(rng, lex, register_year, language, relation, sex, age, names, address, number, married)
        )

    members: list[Member] = []
    add("head", head_sex, head_age, head_names)
    if married:
        add("spouse", "F", max(18, head_age + rng.randint(-10, 4)), spouse_names)
    mother_age = head_age if head_sex == "F" else (members[-1].values["age"] if married else head_age)
    for _ in range(rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 6]) if mother_age > 18 else 0):
        age = rng.randint(0, max(0, min(mother_age - 17, 40)))
        sex = rng.choice("MF")
        add("son" if sex == "M" else "daughter", sex, age, (father[0], mother[0]))
    if rng.random() < 0.12 and head_age < 60:
        add("mother", "F", head_age + rng.randint(20, 35), (lex.surnames.pick(rng), lex.surnames.pick(rng)))
    if rng.random() < 0.08:
        add("servant", "F", rng.randint(14, 50), (lex.surnames.pick(rng), lex.surnames.pick(rng)))
    if rng.random() < 0.05:
        add("lodger", "M", rng.randint(16, 60), (lex.surnames.pick(rng), lex.surnames.pick(rng)))
    children = [m for m in members if m.values["relation"] in {"son", "daughter"}]
    children.sort(key=lambda m: -m.values["age"])  # clerks listed children eldest first
    others = [m for m in members if m not in children]
    return others[:2] + children + others[2:]


def page_members(
    rng: random.Random, lex: Lexicons, template: Template, first_household: int, rows: int = ROWS_PER_PAGE
) -> list[Member]:
    """Whole households until the page is about full."""
    members: list[Member] = []
    number = first_household
    while len(members) < rows - 2:
        members += household(rng, lex, template.register_year or 1930, template.language, number)
        number += 1
    return members


# --- literal text, as a clerk wrote it -------------------------------------------------------


def literal_text(
    key: str, value: Any, previous: dict[str, Any] | None, language: str, rng: random.Random
) -> str:
    if value is None:
        return ""
    if (
        previous is not None
        and previous.get(key) == value
        and key in {"address", "birth_place"}
        and rng.random() < 0.6
    ):
        return rng.choice(["id.", "ídem", "d°", "〃"])
    if key in LITERALS:
        return LITERALS[key][value][1 if language == "es" else 0]
    if key == "birth_date":
        year, month, day = value.split("-")
        return f"{int(day)}/{int(month)}/{year}" if rng.random() < 0.7 else year
    return str(value)


def _column_boxes(template: Template) -> dict[str, tuple[int, int]]:
    boxes, x = {}, MARGIN
    for column in template.columns:
        width = COLUMN_WIDTHS.get(column.key, 200)
        boxes[column.key] = (x, x + width)
        x += width
    return boxes


def page_height(rows: int) -> int:
    return HEADER_HEIGHT + rows * ROW_HEIGHT + 2 * MARGIN


def page_result(
    page_id: str, members: list[Member], template: Template, rng: random.Random, source: str = "generated"
) -> PageResult:
    """Cells (literal text, confidence, status, bbox) and persons for one generated page."""
    boxes = _column_boxes(template)
    width = max(x1 for _, x1 in boxes.values()) + MARGIN
    cells: list[Cell] = []
    persons: list[Person] = []
    previous: dict[str, Any] | None = None
    for row, member in enumerate(members):
        y0 = MARGIN + HEADER_HEIGHT + row * ROW_HEIGHT
        cell_ids: dict[str, str] = {}
        for col, column in enumerate(template.columns):
            x0, x1 = boxes[column.key]
            text = literal_text(column.key, member.values.get(column.key), previous, template.language, rng)
            confidence = round(min(1.0, max(0.05, rng.betavariate(9, 1))), 3) if text else 1.0
            status = (
                "empty"
                if not text
                else ("accepted" if confidence >= template.review_threshold else "needs_review")
            )
            cell_id = f"{page_id}:r{row}:c{col}"
            cell_ids[column.key] = cell_id
            cells.append(
                Cell(
                    cell_id=cell_id,
                    page_id=page_id,
                    row=row,
                    col=col,
                    field=column.key,
                    text=text,
                    value=member.values.get(column.key),
                    confidence=confidence,
                    status=status,
                    reasons=[] if status != "needs_review" else ["low-confidence"],
                    bbox=BBox(x0=x0, y0=y0, x1=x1, y1=y0 + ROW_HEIGHT),
                    engine="datagen",
                )
            )
        persons.append(
            Person(
                page_id=page_id,
                row=row,
                values=dict(member.values),
                cell_ids=cell_ids,
                household_id=f"{page_id}:h{member.household}",
                row_bbox=BBox(x0=MARGIN, y0=y0, x1=width - MARGIN, y1=y0 + ROW_HEIGHT),
            )
        )
        previous = member.values
    info = PageInfo(
        page_id=page_id, source=source, page_index=0, width=width, height=page_height(len(members))
    )
    return PageResult(page=info, template=template.name, cells=cells, persons=persons)


def render_page_image(result: PageResult, path: Path) -> None:
    """A plain page image with each cell's text at its box, so that crops show the row."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (result.page.width, result.page.height), 245)
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 30)
    except OSError:
        font = ImageFont.load_default()
    for cell in result.cells:
        box = cell.bbox
        draw.rectangle((box.x0, box.y0, box.x1, box.y1), outline=90, width=2)
        draw.text((box.x0 + 8, box.y0 + 14), cell.text, fill=20, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=85)


def generate_run(
    run_dir: Path, pages: int, seed: int = 0, template_name: str = "padro-catala-1930", images: bool = True
) -> list[PageResult]:
    """A small run directory: store filled through store.write_page, page images under images/."""
    template = load_template(template_name)
    rng = random.Random(seed)
    lex = Lexicons.load(template.language)
    run_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with store.connect(run_dir) as connection:
        store.create(connection, template)
        for index in range(pages):
            page_id = f"{seed:08x}{index:08x}-p0"
            result = page_result(page_id, page_members(rng, lex, template, 0), template, rng)
            if images:
                render_page_image(result, run_dir / "images" / f"{page_id}.jpg")
            store.write_page(connection, result, template)
            results.append(result)
    return results


# --- bulk path (benchmarks) -----------------------------------------------------------------


def _bulk_cell(
    page_id: str,
    row: int,
    col: int,
    key: str,
    value: Any,
    text: str,
    box: tuple[int, int, int],
    rng: random.Random,
) -> tuple:
    confidence = round(min(1.0, rng.betavariate(9, 1)), 3) if text else 1.0
    status = "empty" if not text else ("accepted" if confidence >= 0.9 else "needs_review")
    x0, x1, y0 = box
    return (
        f"{page_id}:r{row}:c{col}",
        page_id,
        row,
        col,
        key,
        text,
        json.dumps(value, ensure_ascii=False),
        confidence,
        status,
        x0,
        y0,
        x1,
        y0 + ROW_HEIGHT,
        "datagen",
        text,
        status,
    )


def _bulk_rows(
    page_id: str, members: list[Member], template: Template, all_cells: bool, rng: random.Random
) -> tuple[list[tuple], list[tuple]]:
    """Person rows and cell rows of one page; only the name cells unless `all_cells`."""
    keys = [column.key for column in template.columns]
    boxes = _column_boxes(template)
    persons, cells = [], []
    previous: dict[str, Any] | None = None
    for row, member in enumerate(members):
        values = member.values
        y0 = MARGIN + HEADER_HEIGHT + row * ROW_HEIGHT
        columns = list(enumerate(keys)) if all_cells else [(keys.index("name"), "name")]
        cell_ids = {key: f"{page_id}:r{row}:c{col}" for col, key in columns}
        persons.append(
            (
                f"{page_id}:r{row}",
                page_id,
                row,
                f"{page_id}:h{member.household}",
                *[values.get(key) for key in keys],
                json.dumps(cell_ids),
                MARGIN,
                y0,
                PAGE_WIDTH - MARGIN,
                y0 + ROW_HEIGHT,
            )
        )
        cells += [
            _bulk_cell(
                page_id,
                row,
                col,
                key,
                values.get(key),
                literal_text(key, values.get(key), previous, template.language, rng),
                (*boxes[key], y0),
                rng,
            )
            for col, key in columns
        ]
        previous = values
    return persons, cells


def generate_bulk(
    run_dir: Path,
    persons: int,
    seed: int = 0,
    template_name: str = "padro-catala-1930",
    batch_pages: int = 2000,
    all_cells: bool = False,
) -> int:
    """Insert about `persons` persons (whole pages) with bulk SQL. By default only the name cells
    are stored (what search needs: a million persons in ~600 MB); `all_cells` stores every cell
    like a real run (eleven per person). Returns the number of persons written."""
    template = load_template(template_name)
    rng = random.Random(seed)
    lex = Lexicons.load(template.language)
    keys = [column.key for column in template.columns]
    run_dir.mkdir(parents=True, exist_ok=True)
    written, page = 0, 0
    with store.connect(run_dir) as connection:
        store.create(connection, template)
        connection.execute("PRAGMA synchronous=OFF")
        while written < persons:
            batch_persons, batch_cells, batch_pages_rows = [], [], []
            for _ in range(batch_pages):
                if written >= persons:
                    break
                page_id = f"{seed:08x}{page:08x}-p0"
                members = page_members(rng, lex, template, 0)
                person_rows, cell_rows = _bulk_rows(page_id, members, template, all_cells, rng)
                batch_persons += person_rows
                batch_cells += cell_rows
                batch_pages_rows.append(
                    (
                        page_id,
                        "generated",
                        0,
                        PAGE_WIDTH,
                        page_height(len(members)),
                        0.0,
                        "done",
                        len(members),
                        len(keys),
                    )
                )
                written += len(members)
                page += 1
            _insert_bulk(connection, keys, batch_pages_rows, batch_persons, batch_cells)
        with connection:
            store.refresh_row_stats(connection)
    return written


def _insert_bulk(
    connection: sqlite3.Connection,
    keys: list[str],
    pages: list[tuple],
    persons: list[tuple],
    cells: list[tuple],
) -> None:
    with connection:
        connection.executemany(
            "INSERT INTO pages (page_id, source, page_index, width, height, skew_deg, status, "
            "n_rows, n_cols) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            pages,
        )
        connection.executemany(
            f"INSERT INTO persons (person_id, page_id, row, household_id, {', '.join(keys)}, cell_ids, "
            f"x0, y0, x1, y1) VALUES ({','.join('?' * (len(keys) + 9))})",
            persons,
        )
        connection.executemany(
            "INSERT INTO cells (cell_id, page_id, row, col, field, text, value, confidence, status, "
            "x0, y0, x1, y1, engine, machine_text, machine_status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            cells,
        )
