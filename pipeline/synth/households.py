"""Coherent synthetic households for register pages, and how a clerk wrote them down.

A household has a head, usually a spouse and children (who take the father's first and the
mother's first surname, and were born after their mother turned ~17), sometimes a widowed
parent, a servant or a lodger. Ages and birth dates agree with the register's reference date
(31 December of the register year). `write_rows` turns people into the literal text of each
template column and the typed value a parser should produce from it, writing ditto marks
(`id.`, `ídem`, `d°`, `〃`, `"`) where a value repeats the row above and leaving some cells empty.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.lexicons import load_lexicon
from pipeline.stages.templates import ColumnSpec, Template

DITTO_MARKS = ("id.", "Id.", "ídem", "idem", "d°", "〃", '"')

MONTHS = {
    "ca": ["gener", "febrer", "març", "abril", "maig", "juny", "juliol", "agost", "setembre",
           "octubre", "novembre", "desembre"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
           "octubre", "noviembre", "diciembre"],
}

# How clerks wrote each canonical value, per register language; forms not in the template's
# vocabulary are dropped so that every written form parses back to its canonical key.
RELATION_FORMS = {
    "ca": {"head": ["cap", "cap", "cap de família"], "spouse_F": ["muller", "esposa"],
           "spouse_M": ["marit", "espòs"], "son": ["fill"], "daughter": ["filla"],
           "father": ["pare"], "mother": ["mare"], "brother": ["germà"], "sister": ["germana"],
           "grandson": ["nét"], "granddaughter": ["néta"], "nephew": ["nebot"],
           "niece": ["neboda"], "servant_F": ["criada", "minyona"], "servant_M": ["criat"],
           "lodger": ["hostatger", "dispeser"]},
    "es": {"head": ["jefe", "jefe", "cabeza de familia"], "spouse_F": ["esposa", "mujer"],
           "spouse_M": ["esposo"], "son": ["hijo"], "daughter": ["hija"], "father": ["padre"],
           "mother": ["madre"], "brother": ["hermano"], "sister": ["hermana"],
           "grandson": ["nieto"], "granddaughter": ["nieta"], "nephew": ["sobrino"],
           "niece": ["sobrina"], "servant_F": ["criada", "sirvienta"], "servant_M": ["criado"],
           "lodger": ["huésped", "pupilo"]},
}
SEX_FORMS = {"ca": {"M": ["H", "H", "V", "home"], "F": ["D", "D", "dona"]},
             "es": {"M": ["V", "varón"], "F": ["hembra", "mujer"]}}
MARITAL_FORMS = {
    "ca": {("single", "M"): ["solter"], ("single", "F"): ["soltera"], ("married", "M"): ["casat"],
           ("married", "F"): ["casada"], ("widowed", "M"): ["vidu"], ("widowed", "F"): ["vídua"]},
    "es": {("single", "M"): ["soltero"], ("single", "F"): ["soltera"], ("married", "M"): ["casado"],
           ("married", "F"): ["casada"], ("widowed", "M"): ["viudo"], ("widowed", "F"): ["viuda"]},
}
MARITAL_ABBREVIATIONS = {"single": "S", "married": "C", "widowed": "V"}
LITERACY_FORMS = {"ca": {"reads_writes": ["sí", "sí", "si", "L.E."], "reads": ["llegeix"], "none": ["no"]},
                  "es": {"reads_writes": ["sí", "si", "lee y escribe"], "reads": ["lee"],
                         "none": ["no", "ninguno"]}}
# Literacy in two columns (`can_read`, `can_write`): the person's literacy -> "yes" / "no".
CAN = {"can_read": {"reads_writes", "reads"}, "can_write": {"reads_writes"}}
YES_NO_FORMS = {"yes": ["sí", "sí", "si"], "no": ["no"]}
# What clerks noted in a column the template does not know.
REMARKS = {"ca": ["transeünt", "present", "absent", "vacunat", "elector"],
           "es": ["transeúnte", "presente", "ausente", "vacunado", "elector"]}
REMARK_RATE = 0.3
OCCUPATIONS = {
    "ca": {"M": ["jornaler", "jornaler", "pagès", "teixidor", "sabater", "fuster", "paleta", "ferrer",
                 "mecànic", "carreter", "comerciant", "propietari", "forner", "barber", "sastre",
                 "dependent", "escrivent", "mestre", "manobre", "peó", "fonedor", "boter", "obrer"],
           "F": ["sus labores", "sus labores", "sus labores", "feines de casa", "feines de casa",
                 "teixidora", "filadora", "modista", "cosidora", "planxadora", "bugadera", "obrera"],
           "child": ["estudiant", "escolar"], "old": ["jubilat", "propietari", "sense ofici"],
           "servant": ["criada", "minyona"]},
    "es": {"M": ["jornalero", "jornalero", "labrador", "albañil", "zapatero", "carpintero", "herrero",
                 "tejedor", "panadero", "comerciante", "dependiente", "escribiente", "maestro",
                 "peón", "ferroviario", "carretero", "minero", "obrero"],
           "F": ["sus labores", "sus labores", "sus labores", "costurera", "lavandera", "tejedora",
                 "hilandera", "planchadora", "modista"],
           "child": ["estudiante", "escolar"], "old": ["jubilado", "propietario", "sin profesión"],
           "servant": ["sirvienta", "criada"]},
}
FLOORS = {"ca": ["", "", "baixos", "pral.", "1r", "2n", "3r", "1r 1a", "2n 2a", "3r 1a", "4t"],
          "es": ["", "", "bajo", "pral.", "1º", "2º", "3º", "1º 1ª", "2º 2ª", "3º 1ª"]}


@dataclass
class Person:
    given: str
    surname1: str
    surname2: str
    sex: str  # "M" / "F"
    birth_date: dt.date
    birth_place: str
    relation: str  # canonical relation key of the template vocabulary
    marital_status: str
    occupation: str | None = None
    literacy: str | None = None
    residence_years: int | None = None
    household_id: str = ""
    address: str = ""


@dataclass
class Entry:
    """One cell as written: literal text, typed value, and whether it is a ditto mark."""

    text: str
    value: Any
    ditto: bool = False


@dataclass
class Setting:
    """Where and when the register was kept, and the clerk's habits on this page."""

    language: str  # "ca" / "es"
    reference_date: dt.date
    municipality: str
    ditto_marks: tuple[str, ...]
    ditto_rate: float
    empty_rate: float
    catalan_conjunction: bool  # "Puig i Serra"
    date_style: int
    abbreviate_marital: bool = False  # "S", "C", "V" instead of solter/casat/vidu
    next_household: int = 1


def _pick(rng: np.random.Generator, items: list[str] | tuple[str, ...]) -> str:
    return items[int(rng.integers(len(items)))]


def age_at(birth: dt.date, when: dt.date) -> int:
    """Completed years at `when`."""
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def _birth_date(rng: np.random.Generator, age: int, when: dt.date) -> dt.date:
    """A birth date giving exactly `age` completed years at `when`."""
    latest = dt.date(when.year - age, when.month, when.day)
    return latest - dt.timedelta(days=int(rng.integers(0, 365)))


def _is_catalan_place(place: str) -> bool:
    return place in load_lexicon("places_ca")


def _given_name(rng: np.random.Generator, sex: str, catalan: bool) -> str:
    sex_key = sex.lower()
    if catalan:
        return _pick(rng, load_lexicon(f"given_names_{'ca' if rng.random() < 0.6 else 'es'}_{sex_key}"))
    return _pick(rng, load_lexicon(f"given_names_es_{sex_key}"))


def _surname(rng: np.random.Generator, catalan: bool) -> str:
    return _pick(rng, load_lexicon("surnames_ca" if catalan and rng.random() < 0.75 else "surnames_es"))


def _origin(rng: np.random.Generator, setting: Setting, catalan: bool) -> str:
    if not catalan:
        return _pick(rng, load_lexicon("places_es"))
    if rng.random() < 0.45:
        return setting.municipality
    if rng.random() < 0.04:
        return _pick(rng, load_lexicon("places_other"))
    return _pick(rng, load_lexicon("places_ca"))


def _adult_occupation(rng: np.random.Generator, setting: Setting, sex: str, age: int) -> str | None:
    forms = OCCUPATIONS[setting.language]
    if age >= 68 and sex == "M" and rng.random() < 0.5:
        return _pick(rng, forms["old"])
    return _pick(rng, forms[sex])


def _occupation(rng: np.random.Generator, setting: Setting, person: Person, age: int) -> str | None:
    if person.relation == "servant":
        return _pick(rng, OCCUPATIONS[setting.language]["servant"])
    if age < 6:
        return None
    if age < 14:
        return _pick(rng, OCCUPATIONS[setting.language]["child"]) if rng.random() < 0.6 else None
    return _adult_occupation(rng, setting, person.sex, age)


def _literacy(rng: np.random.Generator, person: Person, age: int) -> str | None:
    if age < 6:
        return None if rng.random() < 0.7 else "none"
    # older people, and women, were less often literate in 1900s Spain
    p_write = 0.85 - 0.006 * max(0, age - 20) - (0.12 if person.sex == "F" else 0.0)
    draw = rng.random()
    return "reads_writes" if draw < p_write else "reads" if draw < p_write + 0.08 else "none"


def _marital(rng: np.random.Generator, age: int) -> str:
    if age < 18:
        return "single"
    if age < 30:
        return "married" if rng.random() < 0.45 else "single"
    return "widowed" if rng.random() < 0.005 * max(0, age - 40) else "married" if rng.random() < 0.8 else "single"


def _make(rng: np.random.Generator, setting: Setting, *, sex: str, age: int, relation: str,
          surnames: tuple[str, str] | None, catalan: bool, place: str | None = None,
          marital: str | None = None) -> Person:
    person = Person(
        given=_given_name(rng, sex, catalan),
        surname1=surnames[0] if surnames else _surname(rng, catalan),
        surname2=surnames[1] if surnames else _surname(rng, catalan),
        sex=sex, birth_date=_birth_date(rng, age, setting.reference_date),
        birth_place=place or _origin(rng, setting, catalan), relation=relation,
        marital_status=marital or _marital(rng, age))
    person.occupation = _occupation(rng, setting, person, age)
    person.literacy = _literacy(rng, person, age)
    born_here = person.birth_place == setting.municipality
    person.residence_years = age if born_here else int(rng.integers(0, max(1, age - 14) + 1))
    return person


def _children(rng: np.random.Generator, setting: Setting, father: Person, mother: Person,
              mother_age: int, catalan: bool) -> list[Person]:
    count = int(rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 6]))
    age = mother_age - int(rng.integers(18, 26))
    kids: list[Person] = []
    while len(kids) < count and age >= 0:
        sex = "M" if rng.random() < 0.5 else "F"
        kid = _make(rng, setting, sex=sex, age=age, relation="son" if sex == "M" else "daughter",
                    surnames=(father.surname1, mother.surname1), catalan=catalan,
                    place=setting.municipality if rng.random() < 0.8 else mother.birth_place)
        kids.append(kid)
        age -= int(rng.integers(1, 5))
    return kids


def _gendered(rng: np.random.Generator, male: str, female: str) -> tuple[str, str]:
    """(sex, relation) for a relative of either sex."""
    return ("M", male) if rng.random() < 0.5 else ("F", female)


def _kin(rng: np.random.Generator, setting: Setting, head: Person, head_age: int, catalan: bool) -> list[Person]:
    """Relatives beyond the couple and their children, in the order clerks listed them."""
    kin: list[Person] = []
    if head_age >= 50 and rng.random() < 0.08:  # a grandchild raised by the grandparents
        sex, relation = _gendered(rng, "grandson", "granddaughter")
        kin.append(_make(rng, setting, sex=sex, age=int(rng.integers(0, 13)), relation=relation,
                         surnames=(head.surname1, _surname(rng, catalan)), catalan=catalan,
                         place=setting.municipality if rng.random() < 0.7 else None))
    if head_age < 45 and rng.random() < 0.15:  # a widowed parent of the head
        sex, relation = _gendered(rng, "father", "mother")
        kin.append(_make(rng, setting, sex=sex, age=head_age + int(rng.integers(22, 36)), relation=relation,
                         surnames=(head.surname2 if sex == "F" else head.surname1, _surname(rng, catalan)),
                         catalan=catalan, place=head.birth_place, marital="widowed"))
    if rng.random() < 0.07:  # an unmarried or widowed brother or sister of the head
        sex, relation = _gendered(rng, "brother", "sister")
        kin.append(_make(rng, setting, sex=sex, age=max(14, head_age + int(rng.integers(-12, 13))),
                         relation=relation, surnames=(head.surname1, head.surname2), catalan=catalan,
                         place=head.birth_place, marital="single" if rng.random() < 0.7 else "widowed"))
    if rng.random() < 0.05:  # a nephew or niece: the child of the head's brother or sister
        sex, relation = _gendered(rng, "nephew", "niece")
        other = _surname(rng, catalan)
        kin.append(_make(rng, setting, sex=sex, age=int(rng.integers(4, 26)), relation=relation,
                         surnames=(head.surname1, other) if rng.random() < 0.5 else (other, head.surname1),
                         catalan=catalan))
    return kin


def _extras(rng: np.random.Generator, setting: Setting, head: Person, head_age: int, catalan: bool) -> list[Person]:
    """Kin, then a live-in servant and a lodger now and then."""
    extras = _kin(rng, setting, head, head_age, catalan)
    if rng.random() < 0.12:
        extras.append(_make(rng, setting, sex="F", age=int(rng.integers(14, 32)), relation="servant",
                            surnames=None, catalan=rng.random() < 0.5, marital="single"))
    if rng.random() < 0.1:
        extras.append(_make(rng, setting, sex="M", age=int(rng.integers(17, 50)), relation="lodger",
                            surnames=None, catalan=rng.random() < 0.5))
    return extras


def _address(rng: np.random.Generator, setting: Setting) -> str:
    street = _pick(rng, load_lexicon(f"streets_{setting.language}"))
    floor = _pick(rng, FLOORS[setting.language])
    number = int(rng.integers(1, 120))
    return f"{street}, {number}" + (f", {floor}" if floor else "")


def make_household(rng: np.random.Generator, setting: Setting) -> list[Person]:
    """One household, head first; every member shares the household id and the address."""
    catalan = rng.random() < 0.6
    head_sex = "M" if rng.random() < 0.85 else "F"
    head_age = int(rng.integers(24, 76))
    married = head_sex == "M" and rng.random() < 0.85
    head = _make(rng, setting, sex=head_sex, age=head_age, relation="head", surnames=None,
                 catalan=catalan, marital="married" if married else ("widowed" if head_sex == "F" else None))
    members = [head]
    if married:
        wife_age = max(16, head_age - int(rng.integers(-2, 11)))
        wife = _make(rng, setting, sex="F", age=wife_age, relation="spouse", surnames=None,
                     catalan=catalan and rng.random() < 0.85, marital="married")
        members += [wife, *_children(rng, setting, head, wife, wife_age, catalan)]
    elif head_sex == "F":
        # the late husband, never listed, still gives the children their first surname
        father = Person("", _surname(rng, catalan), _surname(rng, catalan), "M", head.birth_date,
                        head.birth_place, "spouse", "widowed")
        members += _children(rng, setting, father, head, head_age, catalan)
    members += _extras(rng, setting, head, head_age, catalan)
    household_id = f"h{setting.next_household}"
    setting.next_household += 1
    address = _address(rng, setting)
    for member in members:
        member.household_id, member.address = household_id, address
    return members


def _vocab_forms(column: ColumnSpec, canonical: str, forms: list[str]) -> list[str]:
    """Forms that the template vocabulary maps to `canonical` (else its first variant)."""
    variants = column.vocabulary.get(canonical, [])
    known = [form for form in forms if form.lower() in {v.lower() for v in variants}]
    return known or variants[:1] or [canonical]


def _relation_entry(rng: np.random.Generator, column: ColumnSpec, setting: Setting, person: Person) -> Entry:
    table = RELATION_FORMS[setting.language]
    key = f"{person.relation}_{person.sex}" if f"{person.relation}_{person.sex}" in table else person.relation
    return Entry(_pick(rng, _vocab_forms(column, person.relation, table.get(key, []))), person.relation)


def _date_text(rng: np.random.Generator, setting: Setting, date: dt.date) -> str:
    d, m, y = date.day, date.month, date.year
    month = MONTHS[setting.language][m - 1]
    style = setting.date_style if rng.random() < 0.85 else int(rng.integers(0, 5))
    if style == 0:
        return f"{d}-{m}-{y}"
    if style == 1:
        return f"{d}/{m}/{y}"
    if style == 2:
        return f"{d}-{m}-{y % 100:02d}"
    if style == 3:
        elided = setting.language == "ca" and month[0] in "ao"  # Catalan "d'abril", "d'octubre"
        return f"{d} {'d' + chr(39) if elided else 'de '}{month} de {y}"
    return f"{d} {month} {y}"


def _age_entry(rng: np.random.Generator, setting: Setting, person: Person) -> Entry:
    age = age_at(person.birth_date, setting.reference_date)
    if age == 0 and rng.random() < 0.5:
        months = max(1, (setting.reference_date - person.birth_date).days // 30)
        return Entry(f"{months} m.", 0)
    return Entry(str(age), age)


def _entry(rng: np.random.Generator, column: ColumnSpec, setting: Setting, person: Person) -> Entry:
    """The cell of `column` for `person`, before ditto marks and random blanks."""
    language = setting.language
    kind = column.type
    if kind == "name":
        joiner = " i " if setting.catalan_conjunction and _is_catalan_place(person.birth_place) else " "
        text = f"{person.given} {person.surname1}{joiner}{person.surname2}"
        return Entry(text, text)
    if kind == "relation":
        return _relation_entry(rng, column, setting, person)
    if kind == "sex":
        return Entry(_pick(rng, _vocab_forms(column, person.sex, SEX_FORMS[language][person.sex])), person.sex)
    if kind == "age":
        return _age_entry(rng, setting, person)
    if kind == "date":
        return Entry(_date_text(rng, setting, person.birth_date), person.birth_date.isoformat())
    if kind == "place":
        return Entry(person.birth_place, person.birth_place)
    if kind == "marital_status":
        forms = MARITAL_FORMS[language][(person.marital_status, person.sex)]
        if setting.abbreviate_marital:
            forms = [MARITAL_ABBREVIATIONS[person.marital_status]]
        return Entry(_pick(rng, _vocab_forms(column, person.marital_status, forms)), person.marital_status)
    if kind == "occupation":
        return Entry(person.occupation or "", person.occupation)
    if kind == "literacy" and column.key in CAN:
        if person.literacy is None:
            return Entry("", None)
        answer = "yes" if person.literacy in CAN[column.key] else "no"
        return Entry(_pick(rng, _vocab_forms(column, answer, YES_NO_FORMS[answer])), answer)
    if kind == "literacy":
        if person.literacy is None:
            return Entry("", None)
        return Entry(_pick(rng, _vocab_forms(column, person.literacy, LITERACY_FORMS[language][person.literacy])),
                     person.literacy)
    if kind == "address":
        return Entry(person.address, person.address)
    if kind == "number" and column.key == "residence_years" and person.residence_years is not None:
        return Entry(str(person.residence_years), person.residence_years)
    if kind == "text" and rng.random() < REMARK_RATE:
        remark = _pick(rng, REMARKS[language])
        return Entry(remark, remark)
    return Entry("", None)


DITTO_TYPES = {"place", "address", "occupation", "number", "literacy", "marital_status"}
BLANKABLE_TYPES = {"date", "place", "occupation", "literacy", "number", "marital_status", "address"}


def _finish(rng: np.random.Generator, column: ColumnSpec, setting: Setting, entry: Entry,
            above: Entry | None) -> Entry:
    """Write a ditto mark for a repeated value, or leave the cell blank now and then."""
    repeated = above is not None and above.value is not None and above.value == entry.value
    if repeated and column.allow_ditto and column.type in DITTO_TYPES:
        rate = setting.ditto_rate * (1.6 if column.type in ("address", "place") else 0.6)
        if rng.random() < rate:
            return Entry(_pick(rng, setting.ditto_marks), entry.value, ditto=True)
    if entry.value is not None and column.type in BLANKABLE_TYPES and rng.random() < setting.empty_rate:
        return Entry("", None)
    return entry


def write_rows(rng: np.random.Generator, template: Template, setting: Setting,
               people: list[Person]) -> list[dict[str, Entry]]:
    """The written cells (field key -> Entry) of each person's register row, in order."""
    rows: list[dict[str, Entry]] = []
    # the order number runs on from the page before (`num`, on forms that print it)
    first = int(rng.integers(1, 400)) if any(column.key == "num" for column in template.columns) else 1
    for index, person in enumerate(people):
        row: dict[str, Entry] = {}
        for column in template.columns:
            above = rows[-1][column.key] if rows else None
            entry = Entry(str(first + index), first + index) if column.key == "num" else _entry(
                rng, column, setting, person)
            row[column.key] = _finish(rng, column, setting, entry, above)
        rows.append(row)
    return rows


def make_setting(rng: np.random.Generator, template: Template) -> Setting:
    """The page's town, date and clerk habits (ditto style, date style...)."""
    language = template.language if template.language in MONTHS else "es"
    year = template.register_year or 1930
    towns = load_lexicon("places_ca")
    municipality = "Barcelona" if rng.random() < 0.4 else _pick(rng, towns)
    marks = tuple(str(mark) for mark in rng.choice(DITTO_MARKS, size=int(rng.integers(1, 3)), replace=False))
    return Setting(language=language, reference_date=dt.date(year, 12, 31), municipality=municipality,
                   ditto_marks=marks, ditto_rate=float(rng.uniform(0.25, 0.6)),
                   empty_rate=float(rng.uniform(0.0, 0.05)),
                   catalan_conjunction=language == "ca" and rng.random() < 0.35,
                   date_style=int(rng.integers(0, 5)),
                   abbreviate_marital=rng.random() < 0.15)


def make_people(rng: np.random.Generator, setting: Setting, count: int) -> list[Person]:
    """At least `count` people in whole households (the caller keeps the first `count`)."""
    people: list[Person] = []
    while len(people) < count:
        people += make_household(rng, setting)
    return people[:count]
