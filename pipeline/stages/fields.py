"""Fields stage: the recognised cells of one page -> typed, validated values, and one `Person`
per register row.

For each cell: blank and illegible cells get no value; a ditto mark ('id.', 'ídem', 'd°', '〃',
'"') takes the resolved value of the same column in the row above, its literal text kept
and the written cell the value comes from recorded (`Cell.value_from`, through chains of
dittos: a value copied from a cell awaiting review awaits that review too); any other text
is parsed by its column's field type (pipeline.stages.fieldtypes). Then the template's consistency
rules compare values across a row and across a household. Problems are recorded as `Reason`s
on the cells; pipeline.stages.route turns them into review decisions. Household ids are assigned
later (pipeline.dataset.households).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.stages.fieldtypes import (
    Parsed, Reason, clean_text, given_name_sex, is_ditto, is_illegible, parse_address, parse_age, parse_date,
    parse_name, parse_number, parse_vocabulary, snap_phrase, surnames_of, trailing_dittos,
)
from pipeline.models import BBox, Cell, Person
from pipeline.stages.templates import ColumnSpec, Template, extra_column

VOCABULARY_TYPES = frozenset({"relation", "sex", "marital_status", "literacy"})
# Columns of words: a reading without a letter is no value of theirs (a ditto's two strokes read "11").
WORD_TYPES = frozenset({"name", "address", "place", "occupation"})
# The sex a relation implies (template vocabulary keys); the other relations say nothing of it.
RELATION_SEX = {"son": "M", "daughter": "F", "father": "M", "mother": "F", "brother": "M", "sister": "F",
                "grandson": "M", "granddaughter": "F", "son_in_law": "M", "daughter_in_law": "F",
                "nephew": "M", "niece": "F", "brother_in_law": "M", "sister_in_law": "F",
                "father_in_law": "M", "mother_in_law": "F", "grandfather": "M", "grandmother": "F",
                "uncle": "M", "aunt": "F"}
CHILDREN = frozenset({"son", "daughter"})
PARENTS = frozenset({"head", "spouse"})
# Tolerance of the age / birth-date check: the register day may fall before or after the birthday.
AGE_TOLERANCE_YEARS = 1


def interpret(cells: list[Cell], template: Template) -> tuple[list[Cell], list[Person]]:
    """Typed values and reasons for every cell of a page, plus one Person per non-empty row.

    Returns copies of the cells, in the order given; statuses are left for pipeline.stages.route."""
    columns = {column.key: column for column in template.columns}
    resolved: dict[tuple[int, int], Cell] = {}
    for cell in sorted(cells, key=lambda cell: (cell.row, cell.col)):
        above = resolved.get((cell.row - 1, cell.col))
        parsed, copied = _interpret_cell(cell, _column_of(cell, columns), above, template)
        resolved[(cell.row, cell.col)] = cell.model_copy(update={
            "value": parsed.value, "reasons": _merge(cell.reasons, parsed.reasons),
            "value_from": (above.value_from or above.cell_id) if copied and above is not None else None})
    rows = _rows(list(resolved.values()))
    for rule in template.rules:
        RULES[rule](rows, template)
    interpreted = [rows_cell for row in rows.values() for rows_cell in row.cells.values()]
    by_id = {cell.cell_id: cell for cell in interpreted}
    by_id.update({cell.cell_id: cell for row in rows.values() for cell in row.unmapped})
    return [by_id[cell.cell_id] for cell in cells], [_person(row) for row in rows.values() if row.written]


def _column_of(cell: Cell, columns: dict[str, ColumnSpec]) -> ColumnSpec | None:
    """The cell's template column; a column the template does not know (pipeline.stages.columns kept
    it under its own key) is read as text."""
    if cell.field is None or cell.field in columns:
        return columns.get(cell.field or "")
    return extra_column(cell.field, cell.field)


def _merge(existing: list[str], new: list[str]) -> list[str]:
    return list(dict.fromkeys([*existing, *new]))


def is_blank(cell: Cell) -> bool:
    """A blank crop: nothing was written, so there is nothing to read or review."""
    return cell.status == "empty" and not cell.text.strip()


def _interpret_cell(cell: Cell, column: ColumnSpec | None, above: Cell | None,
                    template: Template) -> tuple[Parsed, bool]:
    """The cell's typed value and reasons, and whether its value was copied from the cell above."""
    if is_blank(cell) or is_illegible(cell.text):
        return Parsed(None), False  # route decides between 'empty' and 'illegible'
    if column is None:
        return Parsed(clean_text(cell.text)), False
    written, dittos = trailing_dittos(cell.text)
    if is_ditto(cell.text) or (dittos and not written):  # 'id.', '〃', 'id. id.'
        parsed = _resolve_ditto(cell, column, above)
    elif column.type == "name" and dittos:
        parsed = _resolve_surname_ditto(written, column, above)
    else:
        return parse_value(cell.text, column, template.register_year, template.language), False
    return parsed, not parsed.reasons  # a ditto with a reason (nothing above, not allowed) copied nothing


def _resolve_ditto(cell: Cell, column: ColumnSpec, above: Cell | None) -> Parsed:
    """The value of the row above (itself possibly a resolved ditto), the literal kept by the caller."""
    if not column.allow_ditto:
        return Parsed(None, [Reason.DITTO_NOT_ALLOWED.value])
    if cell.row == 0 or above is None or above.value is None:
        return Parsed(None, [Reason.DITTO_WITHOUT_VALUE.value])
    return Parsed(above.value)


def _resolve_surname_ditto(written: str, column: ColumnSpec, above: Cell | None) -> Parsed:
    """'Maria id. id.' or 'Maria 〃': the given name written, the surnames of the name above.

    Allowed even where whole-cell dittos are not (`allow_ditto: false` on names): clerks
    ditto the surnames of a household, never a whole name."""
    parsed = parse_name(written, column.lexicon)
    above_name = above.value if above is not None and isinstance(above.value, str) else ""
    surnames = surnames_of(above_name, column.lexicon)
    if not surnames:
        return Parsed(parsed.value, [Reason.DITTO_WITHOUT_VALUE.value])
    return Parsed(f"{parsed.value} {surnames}")


def parse_value(text: str, column: ColumnSpec, register_year: int | None, language: str = "") -> Parsed:
    """Typed value of one written cell, by its column's field type (`language`: the register's)."""
    if column.type in WORD_TYPES and not any(char.isalpha() for char in text):
        return Parsed(clean_text(text), [Reason.NO_LETTERS.value])
    if column.type in VOCABULARY_TYPES:
        return parse_vocabulary(text, column.vocabulary) if column.vocabulary else Parsed(clean_text(text))
    lexicon = column.lexicon
    parsers: dict[str, Callable[[], Parsed]] = {
        "name": lambda: parse_name(text, lexicon),
        "age": lambda: parse_age(text),
        "number": lambda: parse_number(text),
        "date": lambda: parse_date(text, register_year),
        "address": lambda: parse_address(text, lexicon, language),
        "place": lambda: snap_phrase(text, lexicon) if lexicon else Parsed(clean_text(text)),
        "occupation": lambda: snap_phrase(text, lexicon) if lexicon else Parsed(clean_text(text)),
    }
    return parsers.get(column.type, lambda: Parsed(clean_text(text)))()


# --- rows and persons -----------------------------------------------------------------------


@dataclass
class Row:
    """The cells of one register row, by field key (first column wins if two map to one key)."""

    row: int
    cells: dict[str, Cell]
    unmapped: list[Cell]

    @property
    def page_id(self) -> str:
        return next(iter([*self.cells.values(), *self.unmapped])).page_id

    @property
    def written(self) -> bool:
        return any(not is_blank(cell) for cell in self.cells.values())

    def value(self, key: str | None) -> object:
        cell = self.cells.get(key) if key else None
        return cell.value if cell is not None else None

    def valid_value(self, key: str | None) -> object:
        """The value, unless its own cell already failed validation (no rule on top of a misreading)."""
        cell = self.cells.get(key) if key else None
        return cell.value if cell is not None and not cell.reasons else None

    def flag(self, key: str | None, reason: Reason) -> None:
        if key and key in self.cells:
            cell = self.cells[key]
            self.cells[key] = cell.model_copy(update={"reasons": _merge(cell.reasons, [reason.value])})


def _rows(cells: list[Cell]) -> dict[int, Row]:
    rows: dict[int, Row] = {}
    for cell in sorted(cells, key=lambda cell: (cell.row, cell.col)):
        row = rows.setdefault(cell.row, Row(cell.row, {}, []))
        if cell.field is None or cell.field in row.cells:
            row.unmapped.append(cell)
        else:
            row.cells[cell.field] = cell
    return rows


def _person(row: Row) -> Person:
    cells = list(row.cells.values())
    return Person(
        page_id=row.page_id, row=row.row,
        values={key: cell.value for key, cell in row.cells.items()},
        cell_ids={key: cell.cell_id for key, cell in row.cells.items()},
        row_bbox=_union([cell.bbox for cell in [*cells, *row.unmapped]]))


def _union(boxes: list[BBox]) -> BBox:
    return BBox(x0=min(box.x0 for box in boxes), y0=min(box.y0 for box in boxes),
                x1=max(box.x1 for box in boxes), y1=max(box.y1 for box in boxes))


# --- consistency rules ----------------------------------------------------------------------


def _key_of_type(template: Template, field_type: str, prefer: str = "") -> str | None:
    """Key of the template's column of this type (the one whose key contains `prefer` first)."""
    keys = [column.key for column in template.columns if column.type == field_type]
    preferred = [key for key in keys if prefer and prefer in key]
    return (preferred or keys or [None])[0]


def check_age_matches_birth_date(rows: dict[int, Row], template: Template) -> None:
    """Age must equal register year − birth year, ±1 (birthday before or after the register day)."""
    age_key, date_key = _key_of_type(template, "age"), _key_of_type(template, "date", prefer="birth")
    if template.register_year is None or age_key is None or date_key is None:
        return
    for row in rows.values():
        age, birth = row.valid_value(age_key), row.valid_value(date_key)
        if not isinstance(age, int) or not isinstance(birth, str):
            continue
        expected = template.register_year - int(birth[:4])
        if abs(age - expected) > AGE_TOLERANCE_YEARS:
            row.flag(age_key, Reason.AGE_BIRTH_MISMATCH)
            row.flag(date_key, Reason.AGE_BIRTH_MISMATCH)


def households_on_page(rows: dict[int, Row], template: Template) -> list[list[Row]]:
    """The page's written rows grouped into households exactly as pipeline.dataset.households assigns
    them (a head opens one; so does a clearly different address that persists), so that the
    household rules and the household ids stored agree."""
    from pipeline.dataset.households import assign_households

    written = [row for row in rows.values() if row.written]
    if not written:
        return []
    persons = assign_households([_person(row) for row in written], template, written[0].page_id)
    household_of = {person.row: person.household_id for person in persons}
    groups: dict[str | None, list[Row]] = {}
    for row in written:
        groups.setdefault(household_of[row.row], []).append(row)
    return list(groups.values())


def check_head_first(rows: dict[int, Row], template: Template) -> None:
    """A household starting at a new address must start with its head (the page's first
    household may continue from the previous page)."""
    relation_key = _key_of_type(template, "relation")
    for household in households_on_page(rows, template)[1:]:
        if household[0].valid_value(relation_key) not in (None, "head"):
            household[0].flag(relation_key, Reason.HEAD_NOT_FIRST)


def check_child_younger(rows: dict[int, Row], template: Template) -> None:
    """A son or daughter must be younger than the head and the head's spouse."""
    relation_key, age_key = _key_of_type(template, "relation"), _key_of_type(template, "age")
    for household in households_on_page(rows, template):
        parent_ages = [age for row in household if row.valid_value(relation_key) in PARENTS
                       and isinstance(age := row.valid_value(age_key), int)]
        if not parent_ages:
            continue
        for row in household:
            age = row.valid_value(age_key)
            if row.valid_value(relation_key) in CHILDREN and isinstance(age, int) and age >= min(parent_ages):
                row.flag(age_key, Reason.CHILD_OLDER_THAN_PARENT)


def check_sex_matches_name(rows: dict[int, Row], template: Template) -> None:
    """The sex must be the one the first given name (when only one sex bears it) and the relation
    (son, mother...) imply: a one-letter sex cell is easily misread, or its ditto copies the row
    above's sex onto a person of the other. Flags the sex and the cell that disagrees with it."""
    sex_key, name_key, relation_key = (_key_of_type(template, kind) for kind in ("sex", "name", "relation"))
    for row in rows.values():
        sex, name = row.valid_value(sex_key), row.valid_value(name_key)
        if sex not in ("M", "F"):
            continue
        for key, implied in ((name_key, given_name_sex(name) if isinstance(name, str) else None),
                             (relation_key, RELATION_SEX.get(str(row.valid_value(relation_key))))):
            if implied is not None and implied != sex:
                row.flag(sex_key, Reason.SEX_MISMATCH)
                row.flag(key, Reason.SEX_MISMATCH)


RULES: dict[str, Callable[[dict[int, Row], Template], None]] = {
    "age_matches_birth_date": check_age_matches_birth_date,
    "head_first_in_household": check_head_first,
    "child_younger_than_head": check_child_younger,
    "sex_matches_name": check_sex_matches_name,
}
