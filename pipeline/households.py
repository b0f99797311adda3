"""Household reconstruction for one page: which register rows live together.

Clerks wrote a household as a block of consecutive rows: the head (cap/jefe/chef) first,
then spouse, children, relatives, servants and lodgers, all at the same address (usually
ditto-marked). A new household therefore starts at a row whose relation is `head`, or whose
address differs from the current household's. Rows before the first head on a page continue
a household from the previous page. Household inconsistencies (a child older than a parent,
a household not starting with its head) are flagged on the cells by the fields stage's rules,
with the same grouping; `HOUSEHOLD_REASONS` lists them so exports can surface them per household.
"""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz import fuzz

from pipeline.fieldtypes import Reason
from pipeline.models import Person
from pipeline.templates import Template

HEAD = "head"
ADDRESS_SAME = 88  # rapidfuzz ratio at or above which two (OCR'd) addresses are the same
HOUSEHOLD_REASONS = (Reason.CHILD_OLDER_THAN_PARENT.value, Reason.HEAD_NOT_FIRST.value,
                     Reason.AGE_BIRTH_MISMATCH.value)


def _fold_address(value: object) -> str:
    text = unicodedata.normalize("NFKD", str(value or "").casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


def _field_of_type(template: Template, field_type: str) -> str | None:
    return next((column.key for column in template.columns if column.type == field_type), None)


def _same_address(current: str, address: str) -> bool:
    """Same dwelling: equal house/floor numbers and a near-identical street (OCR slips allowed).
    An empty address (ditto not resolved, blank cell) continues the current household."""
    if not address or not current:
        return True
    numbers = [re.findall(r"\d+", text) for text in (current, address)]
    if numbers[0] != numbers[1]:
        return False
    streets = [re.sub(r"\d+", " ", text) for text in (current, address)]
    return fuzz.ratio(*streets) >= ADDRESS_SAME


def assign_households(persons: list[Person], template: Template, page_id: str) -> list[Person]:
    """Copies of `persons` (in row order) with household ids unique in the run: '<page_id>:h<n>'."""
    relation_key = _field_of_type(template, "relation")
    address_key = _field_of_type(template, "address")
    ordered = sorted(persons, key=lambda person: person.row)
    assigned: list[Person] = []
    number, current_address = -1, ""
    for person in ordered:
        relation = person.values.get(relation_key) if relation_key else None
        address = _fold_address(person.values.get(address_key)) if address_key else ""
        if number < 0 or relation == HEAD or not _same_address(current_address, address):
            number, current_address = number + 1, address
        current_address = address or current_address
        assigned.append(person.model_copy(update={"household_id": f"{page_id}:h{number}"}))
    return assigned
