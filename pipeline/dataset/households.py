"""Household reconstruction for one page: which register rows live together.

Clerks wrote a household as a block of consecutive rows: the head (cap/jefe/chef) first,
then spouse, children, relatives, servants and lodgers, all at the same address (usually
ditto-marked). A new household therefore starts at a row whose relation is `head`, or where
the address changes and the change persists into the next row (one odd address is a misreading;
a row read as spouse/son/... also needs a clearly different street). Rows before the first head
on a page continue a household from the previous page. Household inconsistencies (a child older
than a parent, a household not starting with its head) are flagged on the cells by the fields
stage's rules; `HOUSEHOLD_REASONS` lists them so exports can surface them per household.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from rapidfuzz import fuzz

from pipeline.stages.fieldtypes import Reason
from pipeline.models import Person
from pipeline.stages.templates import Template

HEAD = "head"
ADDRESS_SAME = 88  # rapidfuzz ratio at or above which two (OCR'd) street names are the same
OTHER_STREET = 70  # below this, two street names are certainly different streets
HOUSEHOLD_REASONS = (
    Reason.CHILD_OLDER_THAN_PARENT.value,
    Reason.HEAD_NOT_FIRST.value,
    Reason.AGE_BIRTH_MISMATCH.value,
)


def _fold_address(value: object) -> str:
    text = unicodedata.normalize("NFKD", str(value or "").casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


def _field_of_type(template: Template, field_type: str) -> str | None:
    return next((column.key for column in template.columns if column.type == field_type), None)


def _street(text: str) -> str:
    return " ".join(re.sub(r"\d+", " ", text).split())


def _same_address(current: str, address: str) -> bool:
    """Same dwelling: equal house/floor numbers and a near-identical street (OCR slips allowed).
    An empty address (ditto not resolved, blank cell) continues the current household."""
    if not address or not current:
        return True
    if re.findall(r"\d+", current) != re.findall(r"\d+", address):
        return False
    return fuzz.ratio(_street(current), _street(address)) >= ADDRESS_SAME


def _other_street(current: str, address: str) -> bool:
    """A clearly different street, not a misread letter or digit."""
    return bool(address and current) and fuzz.ratio(_street(current), _street(address)) < OTHER_STREET


def _starts_household(rows: list[tuple[str | None, str]], index: int, household: list[str]) -> bool:
    """Row `index` (relation, folded address) opens a new household after `household`'s addresses.

    A head always does. Otherwise the address must change *and persist* into the next row (a
    single odd address is a misreading); a row whose relation was read as a member (spouse, son...)
    needs a clearly different street too, since members follow their head."""
    relation, address = rows[index]
    if relation == HEAD:
        return True
    current = Counter(a for a in household if a).most_common(1)[0][0] if any(household) else ""
    if _same_address(current, address):
        return False
    following = rows[index + 1] if index + 1 < len(rows) else None
    persists = following is None or following[0] == HEAD or _same_address(address, following[1])
    if relation is None:
        return persists
    return persists and _other_street(current, address)


def assign_households(persons: list[Person], template: Template, page_id: str) -> list[Person]:
    """Copies of `persons` (in row order) with household ids unique in the run: '<page_id>:h<n>'."""
    relation_key = _field_of_type(template, "relation")
    address_key = _field_of_type(template, "address")
    ordered = sorted(persons, key=lambda person: person.row)
    rows = [
        (
            person.values.get(relation_key) if relation_key else None,
            _fold_address(person.values.get(address_key)) if address_key else "",
        )
        for person in ordered
    ]
    assigned: list[Person] = []
    number, household = -1, []
    for index, person in enumerate(ordered):
        if number < 0 or _starts_household(rows, index, household):
            number, household = number + 1, []
        household.append(rows[index][1])
        assigned.append(person.model_copy(update={"household_id": f"{page_id}:h{number}"}))
    return assigned
