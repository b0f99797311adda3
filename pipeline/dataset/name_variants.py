"""Labelled spelling-variant queries for evaluating person search.

Each query takes a real person of a run and rewrites the name the way another clerk, another
language or a historian would: the Spanish/Catalan equivalent of the given name (Josep/José),
a clerk's abbreviation (Jph., Ma., Fco.), accents dropped, i/y, swapped surname order, b/v,
ç/s/z, ll/l·l/ŀl, Puig/Puch, x/ch/j/g, silent h, doubled letters, the second surname left
out, or a one-letter misreading. Queries also carry an approximate birth-year range
and some a birth place, as a genealogist's would. Every query carries a five-year birth
range (a genealogist knows roughly when an ancestor was born), and one that leaves out the
second surname also carries the birth place: without them a common name has dozens of
namesakes in a million persons, and no spelling normalisation can pick the right one.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from pipeline.dataset.dataset import readonly
from pipeline.dataset.names import ABBREVIATIONS, EQUIVALENT_GIVEN_NAMES, fold
from pipeline.run.store import stored_template

REVERSE_ABBREVIATIONS = {
    full: abbreviation
    for abbreviation, full in ABBREVIATIONS.items()
    if len(abbreviation) >= 2 and not abbreviation.endswith(("º", "ª"))
}
MISREADINGS = {"e": "c", "n": "u", "u": "n", "a": "o", "o": "a", "l": "t", "r": "n", "m": "n", "i": "l"}


class LabelledQuery(BaseModel):
    person_id: str
    name: str  # as written in the register
    query: str
    born: tuple[int, int] | None = None
    place: str | None = None
    rules: list[str]


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _equivalents() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for group in EQUIVALENT_GIVEN_NAMES:
        names = group.split()
        for name in names:
            groups[name] = [other for other in names if other != name]
    return groups


EQUIVALENTS = _equivalents()


def _split(name: str) -> tuple[str, list[str]]:
    """Given name and surname words (conjunction dropped)."""
    words = [word for word in name.split() if word not in {"i", "y"}]
    return words[0], words[1:]


def _join(given: str, surnames: list[str], conjunction: str) -> str:
    if len(surnames) == 2 and conjunction:
        return f"{given} {surnames[0]} {conjunction} {surnames[1]}"
    return " ".join([given, *surnames])


SURNAME_RULES: dict[str, tuple[str, str]] = {
    "b/v": (r"[bv]", "bv"),
    "ç/s/z": (r"ç|z|(?<=[aeiou])s(?=[aeiou])", "szç"),
    "ll/l·l": (r"ll|l·l|ŀl", "ll|l·l|ŀl|l"),
    "puig/puch": (r"ig$|ch$", ""),
    "x/ch/j/g": (r"^X|^J|^G(?=[ei])|^Ch", "X|J|G|Ch"),
    "silent h": (r"^H", ""),
    "y/i": (r"^Y|^I(?=[bn])", "Y|I"),
    "double letter": (r"rr|ss|ll|nn|tt", ""),
}


def _apply_surname_rule(rng: random.Random, rule: str, surnames: list[str]) -> bool:
    pattern, options = SURNAME_RULES[rule]
    choices = [i for i, surname in enumerate(surnames) if re.search(pattern, surname)]
    if not choices:
        return False
    index = rng.choice(choices)
    found = re.search(pattern, surnames[index]).group(0)
    if rule == "double letter":
        replacement = found[0]
    elif rule == "puig/puch":  # Puig/Puch, Bosch/Bosc, Blanch/Blanc
        replacement = "ch" if found == "ig" else "c"
    elif rule in {"b/v", "ç/s/z"}:
        replacement = rng.choice([ch for ch in options if ch != found] or [found])
    else:
        replacement = rng.choice([option for option in options.split("|") if option != found] or [found])
    start = re.search(pattern, surnames[index]).start()
    surnames[index] = surnames[index][:start] + replacement + surnames[index][start + len(found) :]
    return True


def make_variant(name: str, rng: random.Random) -> tuple[str, list[str]]:
    """A spelling variant of `name` and the rules applied (at least one rule always applies)."""
    given, surnames = _split(name)
    conjunction = " i " in f" {name} " and "i" or (" y " in f" {name} " and "y") or ""
    applied: list[str] = []
    steps: list[tuple[str, Callable[[], bool]]] = []
    folded_given = fold(given)

    def equivalent() -> bool:
        nonlocal given
        options = EQUIVALENTS.get(folded_given)
        if not options:
            return False
        given = rng.choice(options).capitalize()
        return True

    def abbreviate() -> bool:
        nonlocal given
        abbreviation = REVERSE_ABBREVIATIONS.get(folded_given)
        if not abbreviation:
            return False
        given = abbreviation.capitalize() + "."
        return True

    def conjunction_change() -> bool:
        nonlocal conjunction
        conjunction = rng.choice([c for c in ("i", "y", "") if c != conjunction])
        return len(surnames) == 2

    def swap() -> bool:
        surnames.reverse()
        return len(surnames) == 2

    def drop_second() -> bool:
        if len(surnames) < 2:
            return False
        del surnames[1]
        return True

    def misread() -> bool:
        index = rng.randrange(len(surnames))
        positions = [i for i, ch in enumerate(surnames[index]) if ch in MISREADINGS and i > 0]
        if not positions:
            return False
        i = rng.choice(positions)
        word = surnames[index]
        surnames[index] = word[:i] + MISREADINGS[word[i]] + word[i + 1 :]
        return True

    steps += [
        ("given equivalent", equivalent),
        ("abbreviation", abbreviate),
        ("i/y", conjunction_change),
        ("swapped surnames", swap),
        ("second surname left out", drop_second),
        ("misreading", misread),
    ]
    steps += [(rule, lambda rule=rule: _apply_surname_rule(rng, rule, surnames)) for rule in SURNAME_RULES]
    weights = {
        "given equivalent": 4,
        "abbreviation": 2,
        "i/y": 3,
        "swapped surnames": 2,
        "second surname left out": 1,
        "misreading": 1,
    }
    wanted = rng.randint(1, 3)
    for _ in range(30):
        if len(applied) >= wanted:
            break
        label, step = rng.choices(steps, [weights.get(label, 2) for label, _ in steps])[0]
        if label not in applied and step():
            applied.append(label)
    text = _join(given, surnames, conjunction)
    if rng.random() < 0.4:
        text = _strip_accents(text)
        applied.append("accents dropped")
    return text, applied


def labelled_queries(store_path: Path, count: int = 200, seed: int = 0) -> list[LabelledQuery]:
    """`count` variant queries of random persons with a known name in the store."""
    rng = random.Random(seed)
    with readonly(store_path) as connection:
        register_year = stored_template(connection).register_year or 1930
        total = connection.execute("SELECT MAX(rowid) FROM persons").fetchone()[0] or 0
        queries: list[LabelledQuery] = []
        while len(queries) < count and total:
            row = connection.execute(
                "SELECT person_id, name, birth_date, age, birth_place FROM persons WHERE rowid = ?",
                (rng.randint(1, total),),
            ).fetchone()
            if not row or not row[1] or len(row[1].split()) < 3:
                continue
            person_id, name, birth_date, age, place = row
            text, rules = make_variant(name, rng)
            year = (
                int(birth_date[:4]) if birth_date else (register_year - age if isinstance(age, int) else None)
            )
            if year is None:
                continue
            start = year - rng.randint(0, 4)
            with_place = rng.random() < 0.2 or "second surname left out" in rules
            queries.append(
                LabelledQuery(
                    person_id=person_id,
                    name=name,
                    query=text,
                    born=(start, start + 5),
                    place=place if with_place else None,
                    rules=rules,
                )
            )
    return queries
