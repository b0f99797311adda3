"""Fields stage: typed parsing per field type, ditto marks, lexicon snapping, consistency rules
and Person construction, on realistic Catalan / Spanish / French register readings."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stages.fields import _rows, households_on_page, interpret, parse_value
from pipeline.stages.fieldtypes import (
    Reason, given_name_sex, is_ditto, is_illegible, normalise_name, parse_address, parse_age, parse_date,
    parse_name, parse_number, parse_vocabulary, snap_phrase,
)
from pipeline.models import BBox, Cell
from pipeline.stages.templates import Template, load_template

CATALAN = load_template("padro-catala-1930")
SPANISH = load_template("padron-espanol-1930")
KEYS = [column.key for column in CATALAN.columns]
PAGE = "0123456789abcdef-p0"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_cell(row: int, key: str | None, text: str, confidence: float = 0.99, col: int | None = None) -> Cell:
    """A recognised cell as the recognition stage hands it over (provisional status)."""
    col = KEYS.index(key) if col is None else col
    return Cell(cell_id=f"{PAGE}:r{row}:c{col}", page_id=PAGE, row=row, col=col, field=key, text=text,
                confidence=confidence, status="needs_review" if text.strip() else "empty",
                bbox=BBox(x0=100 * col, y0=40 * row, x1=100 * col + 90, y1=40 * row + 35))


def page(rows: list[dict[str, str]]) -> list[Cell]:
    """Cells of a page: one dict of field key -> literal text per register row (missing = blank)."""
    return [make_cell(index, key, row.get(key, "")) for index, row in enumerate(rows) for key in KEYS]


def by_field(cells: list[Cell], row: int) -> dict[str, Cell]:
    return {cell.field: cell for cell in cells if cell.row == row}


# --- ages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "years"), [
    ("34", 34), ("34 anys", 34), ("34 años", 34), ("34 ans", 34), ("7 a.", 7), ("0", 0),
    ("3 m.", 0), ("8 mesos", 0), ("11 meses", 0), ("5 mois", 0), ("18 mesos", 1), ("15 dies", 0),
    ("3 semanas", 0), ("2 a. 3 m.", 2), ("1 1/2", 1), ("110", 110),
])
def test_age_parses_years_months_and_days(text: str, years: int) -> None:
    assert parse_age(text).value == years
    assert parse_age(text).reasons == []


@pytest.mark.parametrize("text", ["111", "-3", "trenta", "3O", "34 kg", "12-3-1890"])
def test_age_rejects_impossible_or_unreadable(text: str) -> None:
    parsed = parse_age(text)
    assert parsed.value is None
    assert parsed.reasons == [Reason.INVALID_AGE]


# --- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "iso"), [
    ("12-3-1890", "1890-03-12"), ("12/03/1890", "1890-03-12"), ("12.3.1890", "1890-03-12"),
    ("12/03/90", "1890-03-12"), ("5-11-25", "1925-11-05"), ("1-1-30", "1930-01-01"),
    ("12 març 1890", "1890-03-12"), ("12 de març de 1890", "1890-03-12"),
    ("3 d'abril del 1885", "1885-04-03"), ("3 d’octubre de 1901", "1901-10-03"),
    ("12 de marzo de 1890", "1890-03-12"), ("28 de Febrero de 1876", "1876-02-28"),
    ("1er mars 1890", "1890-03-01"), ("14 juillet 1889", "1889-07-14"), ("15 août 1900", "1900-08-15"),
    ("12-III-1890", "1890-03-12"), ("2 7bre 1899", "1899-09-02"), ("20 Xbre 1870", "1870-12-20"),
    ("12 setembr 1890", "1890-09-12"), ("4 set. 1910", "1910-09-04"), ("24 Jer 1848", "1848-01-24"),
    ("marzo 1890", "1890-03"), ("1890", "1890"), ("1890-03-12", "1890-03-12"),
])
def test_date_formats_to_iso(text: str, iso: str) -> None:
    parsed = parse_date(text, register_year=1930)
    assert (parsed.value, parsed.reasons) == (iso, [])


@pytest.mark.parametrize("text", [
    "31-2-1890",  # no 31 February
    "12-13-1890",  # no 13th month
    "1935", "4 de mayo de 1931",  # after the 1930 register
    "1790",  # over 110 years before it
    "12 blorp 1890", "soltero", "90",
])
def test_date_rejects_invalid_future_or_unreadable(text: str) -> None:
    parsed = parse_date(text, register_year=1930)
    assert parsed.value is None and parsed.reasons == [Reason.INVALID_DATE]


def test_real_french_register_dates_parse() -> None:
    """Dates as Paris notaries wrote them in their 1830-1851 registers (LECTAUREP ground truth):
    '28 Xbre 1848', '1er Mars 1850', '29 8bre 1845', '24 Jer 1848'."""
    pages = sorted((DATA / "lectaurep").glob("*/*.xml"))
    if not pages:
        pytest.skip(f"LECTAUREP data not found under {DATA}")
    date_pattern = re.compile(r"\b(\d{1,2}(?:er)?\s+[A-Za-zÀ-ÿ0-9]{3,9}\.?\s+18[0-5]\d)\b")
    dates = [match for page in pages
             for line in re.findall(r'CONTENT="([^"]*)"', page.read_text(encoding="utf-8"))
             for match in date_pattern.findall(html.unescape(line))]
    parsed = [parse_date(date, register_year=1851) for date in dates]
    assert len(dates) >= 50
    assert sum(result.value is not None for result in parsed) / len(dates) >= 0.97
    assert parse_date("28 Xbre 1848", 1851).value == "1848-12-28"


def test_two_digit_year_resolves_against_register_year() -> None:
    assert parse_date("12/03/45", 1930).value == "1845-03-12"
    assert parse_date("12/03/45", 1950).value == "1945-03-12"
    assert parse_date("12/03/45", 1870).value == "1845-03-12"


def test_two_digit_year_without_register_year_is_flagged() -> None:
    parsed = parse_date("12/03/90", None)
    assert parsed.value == "1990-03-12"
    assert parsed.reasons == [Reason.DATE_CENTURY_GUESSED]


# --- vocabularies ---------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "text", "canonical"), [
    ("relation", "fill", "son"), ("relation", "Filla", "daughter"), ("relation", "Cap", "head"),
    ("relation", "cap de familia", "head"), ("relation", "ESPOSA", "spouse"), ("relation", "hijo", "son"),
    ("relation", "fille", "daughter"), ("relation", "Néta", "granddaughter"),
    ("relation", "neta", "granddaughter"),
    ("relation", "cunyat", "brother_in_law"), ("relation", "Huesped", "lodger"),
    ("relation", "muler", "spouse"),  # one letter lost by the recogniser
    ("sex", "H", "M"), ("sex", "d", "F"), ("sex", "V", "M"), ("sex", "varon", "M"), ("sex", "Hembra", "F"),
    ("marital_status", "Casat", "married"), ("marital_status", "vidua", "widowed"),
    ("marital_status", "S", "single"), ("marital_status", "solt.", "single"),
    ("marital_status", "cas.", "married"),
    ("marital_status", "veuve", "widowed"), ("marital_status", "V", "widowed"),
    ("literacy", "sí", "reads_writes"), ("literacy", "L. E.", "reads_writes"), ("literacy", "No", "none"),
    ("literacy", "lee", "reads"),
])
def test_vocabulary_maps_to_canonical_key(key: str, text: str, canonical: str) -> None:
    parsed = parse_vocabulary(text, CATALAN.column(key).vocabulary)
    assert (parsed.value, parsed.reasons) == (canonical, [])


@pytest.mark.parametrize(("key", "text"), [
    ("relation", "amic"), ("relation", "hij"),  # 'hij' is as close to hijo as to hija
    ("sex", "X"), ("marital_status", "divorciat"), ("literacy", "potser"),
])
def test_vocabulary_unknown_keeps_literal_and_flags(key: str, text: str) -> None:
    parsed = parse_vocabulary(text, CATALAN.column(key).vocabulary)
    assert parsed.value == text
    assert parsed.reasons == [Reason.UNKNOWN_VOCABULARY]


def test_vocabulary_fuzzy_matches() -> None:
    relation = CATALAN.column("relation").vocabulary
    assert parse_vocabulary("nebott", relation).value == "nephew"  # close: taken as is
    assert parse_vocabulary("nebott", relation).reasons == []
    mediocre = parse_vocabulary("hostaler", relation)  # an innkeeper, or a misread 'hostatger'?
    assert (mediocre.value, mediocre.reasons) == ("lodger", [Reason.VOCABULARY_UNCERTAIN])
    # as close to 'germà' (brother) as to 'germana' (sister): no guess
    assert parse_vocabulary("germaa", relation).reasons == [Reason.UNKNOWN_VOCABULARY]


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "name"), [
    ("JOSEP PUIG I FERRER", "Josep Puig i Ferrer"),
    ("  maria  rosa vila   de la font ", "Maria Rosa Vila de la Font"),
    ("josé garcía y lópez", "José García y López"),
    ("Joan d'Olot", "Joan d'Olot"), ("JOAN D’OLOT", "Joan d'Olot"),
    ("josep-maria serra", "Josep-Maria Serra"),
])
def test_name_normalisation_keeps_particles(text: str, name: str) -> None:
    assert normalise_name(text) == name


def test_name_tokens_snap_only_when_very_close() -> None:
    assert parse_name("Francessc Soler", "given_names").value == "Francesc Soler"
    assert parse_name("Anna Martinex Rodrigez", "given_names").value == "Anna Martínez Rodríguez"
    assert parse_name("Josep Solerr", "given_names").value == "Josep Solerr"  # an ending added: not snapped
    assert parse_name("Jossep Ferrrer i Roca", "given_names").value == "Josep Ferrer i Roca"
    # short tokens and real near-variants are left alone: Vilar is not Vila
    assert parse_name("Joan Vilar", "given_names").value == "Joan Vilar"
    assert parse_name("Pere Pvig", "given_names").value == "Pere Pvig"
    assert parse_name("Pere Serrat", "given_names").value == "Pere Serrat"
    # accents as written are kept when that spelling is itself known
    assert parse_name("María del Carmen López", "given_names").value == "María del Carmen López"
    assert parse_name("Puig Ferrer, Josep", "given_names").value == "Puig Ferrer, Josep"
    # words of compound given names, and surnames spelt like a foreign given name, stay as written
    assert parse_name("Joan Baptista Castells", "given_names").value == "Joan Baptista Castells"
    assert parse_name("Simón León Calvo", "given_names").value == "Simón León Calvo"


def test_name_without_lexicon_is_only_normalised() -> None:
    assert parse_name("FRANCESSC solerr", None).value == "Francessc Solerr"


# --- places, occupations, addresses, numbers -------------------------------------------------


@pytest.mark.parametrize(("lexicon", "text", "value"), [
    ("places", "Barcelona", "Barcelona"), ("places", "barcelna", "Barcelona"),
    ("places", "Sabadel", "Sabadell"),
    ("places", "Valencia", "Valencia"), ("places", "València", "València"),
    ("places", "Alcaras (Lleida)", "Alcarràs (Lleida)"),
    ("places", "Villafranca del Penedes", "Vilafranca del Penedès"),
    ("occupations", "jornaler", "jornaler"), ("occupations", "pages", "pagès"),
    ("occupations", "teixidra", "teixidora"), ("occupations", "Sus labores", "sus labores"),
])
def test_lexicon_snapping_when_close(lexicon: str, text: str, value: str) -> None:
    parsed = snap_phrase(text, lexicon)
    assert (parsed.value, parsed.reasons) == (value, [])


def test_lexicon_mediocre_match_keeps_literal_and_flags() -> None:
    parsed = snap_phrase("Vich", "places")  # the old spelling of Vic, or a misreading
    assert parsed.value == "Vich"
    assert parsed.reasons == [Reason.LEXICON_UNCERTAIN]


def test_lexicon_unknown_value_is_kept_without_reason() -> None:
    parsed = snap_phrase("Sant Quirze de Besora", "places")
    assert (parsed.value, parsed.reasons) == ("Sant Quirze de Besora", [])


@pytest.mark.parametrize(("text", "value"), [
    ("C/ Major, 12", "carrer Major, 12"),
    ("carrer de Sant Pere, núm. 14", "carrer de Sant Pere, 14"),
    ("Sant Pere 14, 2n 1a", "carrer de Sant Pere, 14, 2n 1a"),
    ("pl. Major 3", "plaça Major, 3"),
    ("calle Mayor 5, bajo", "calle Mayor, 5, bajo"),
    ("c. Hospital 7", "carrer de l'Hospital, 7"),
    ("12 rue de la Republique", "12 rue de la République"),
    ("Masia Can Puig", "Masia Can Puig"),
])
def test_address_snaps_street_and_keeps_number(text: str, value: str) -> None:
    parsed = parse_address(text, "streets", "ca")
    assert (parsed.value, parsed.reasons) == (value, [])


def test_address_abbreviation_follows_register_language() -> None:
    assert parse_address("c. Hospital 7", "streets", "es").value == "calle del Hospital, 7"
    assert parse_address("c. Hospital 7", "streets", "ca").value == "carrer de l'Hospital, 7"
    assert parse_address("calle del Hospital 7", "streets", "ca").value == "calle del Hospital, 7"


def test_address_street_type_must_agree() -> None:
    # there is a 'carrer Major' and a 'plaça Major', but no 'passeig Major'
    assert parse_address("passeig Major 3", "streets").value == "passeig Major 3"


@pytest.mark.parametrize(("text", "value"), [
    ("12", 12), ("5 anys", 5), ("núm. 3", 3), ("1.200", 1200), ("6 mesos", 0)])
def test_number_parses(text: str, value: int) -> None:
    assert parse_number(text).value == value


@pytest.mark.parametrize("text", ["tota la vida", "molts", "-2"])
def test_number_rejects(text: str) -> None:
    assert parse_number(text).reasons == [Reason.INVALID_NUMBER]


# --- ditto marks ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["id.", "Id", "ídem", "Idem.", "íd.", "d°", "do", "dº", "〃", '"', "„", "''",
                                  '" "', "item", "ydem"])
def test_ditto_marks_recognised(text: str) -> None:
    assert is_ditto(text)


@pytest.mark.parametrize("text", ["id. Puig", "Ida", "dona", "no", "1890", ""])
def test_not_ditto_marks(text: str) -> None:
    assert not is_ditto(text)


@pytest.mark.parametrize(("text", "illegible"), [
    ("", True), ("  ", True), ("???", True), ("¿?", True), ("...", True), ("~-", True),
    ('"', False), ("〃", False), ("Puig", False), ("3", False),
])
def test_illegible_readings(text: str, illegible: bool) -> None:
    assert is_illegible(text) is illegible


def test_ditto_chain_resolves_from_rows_above_and_keeps_literal() -> None:
    cells, _ = interpret(page([
        {"name": "Josep Puig Serra", "birth_place": "Barcelna", "address": "C/ Major, 12"},
        {"name": "Maria Vila Font", "birth_place": "id.", "address": '"'},
        {"name": "Joan Puig Vila", "birth_place": "〃", "address": "d°"},
        {"name": "Pere Puig Vila", "birth_place": "ídem", "address": "id"},
    ]), CATALAN)
    for row in (1, 2, 3):
        assert by_field(cells, row)["birth_place"].value == "Barcelona"
        assert by_field(cells, row)["address"].value == "carrer Major, 12"
        assert by_field(cells, row)["birth_place"].reasons == []
    assert [by_field(cells, row)["birth_place"].text for row in (1, 2, 3)] == ["id.", "〃", "ídem"]


def test_a_ditto_records_the_written_cell_its_value_comes_from() -> None:
    cells, _ = interpret(page([
        {"name": "Josep Puig Serra", "birth_place": "Reus", "occupation": "id."},
        {"name": "Maria id. id.", "birth_place": "id.", "occupation": "pagès"},
        {"name": "Joan 〃", "birth_place": "〃", "occupation": "id."},
    ]), CATALAN)
    source = {key: by_field(cells, 0)[key].cell_id for key in ("name", "birth_place")}
    for row in (1, 2):  # through the chain: the cell where the value was written
        assert by_field(cells, row)["birth_place"].value_from == source["birth_place"]
        assert by_field(cells, row)["name"].value_from == source["name"]
    assert by_field(cells, 2)["occupation"].value_from == by_field(cells, 1)["occupation"].cell_id
    # written values, and a ditto with nothing above, copy nothing
    assert by_field(cells, 0)["birth_place"].value_from is None
    assert by_field(cells, 1)["occupation"].value_from is None
    assert by_field(cells, 0)["occupation"].value_from is None


def test_ditto_resolves_typed_values() -> None:
    cells, _ = interpret(page([
        {"name": "Josep Puig", "marital_status": "casat", "residence_years": "12", "birth_date": "12-3-1890"},
        {"name": "Anna Roca", "marital_status": "id.", "residence_years": "id.", "birth_date": "id."},
    ]), CATALAN)
    row = by_field(cells, 1)
    assert (row["marital_status"].value, row["residence_years"].value, row["birth_date"].value) == (
        "married", 12, "1890-03-12")


def test_ditto_without_value_first_row_or_blank_above() -> None:
    cells, _ = interpret(page([
        {"name": "Josep Puig", "birth_place": "id.", "occupation": "jornaler"},
        {"name": "Anna Roca", "birth_place": "Reus", "occupation": ""},
        {"name": "Joan Puig", "birth_place": "Vic", "occupation": "id."},
    ]), CATALAN)
    assert by_field(cells, 0)["birth_place"].reasons == [Reason.DITTO_WITHOUT_VALUE]
    assert by_field(cells, 0)["birth_place"].value is None
    assert by_field(cells, 2)["occupation"].reasons == [Reason.DITTO_WITHOUT_VALUE]


def test_ditto_above_an_invalid_value_has_no_value() -> None:
    rows = [{"name": "Josep Puig", "age": "2O0"}, {"name": "Anna Roca", "age": "id."}]
    cells, _ = interpret(page(rows), CATALAN)
    assert by_field(cells, 1)["age"].reasons == [Reason.DITTO_WITHOUT_VALUE]


def test_surnames_dittoed_after_a_given_name() -> None:
    cells, persons = interpret(page([
        {"name": "Josep Puig i Serra"}, {"name": "Maria id. id."}, {"name": "Joan 〃"},
        {"name": "Juan de la Fuente García"}, {"name": 'Pedro " "'},
    ]), CATALAN)
    assert [person.values["name"] for person in persons] == [
        "Josep Puig i Serra", "Maria Puig i Serra", "Joan Puig i Serra",
        "Juan de la Fuente García", "Pedro de la Fuente García"]
    assert all(cell.reasons == [] for cell in cells)
    assert by_field(cells, 1)["name"].text == "Maria id. id."


def test_surname_ditto_without_a_name_above() -> None:
    cells, _ = interpret(page([{"name": "Maria id."}]), CATALAN)
    assert (by_field(cells, 0)["name"].value, by_field(cells, 0)["name"].reasons) == (
        "Maria", [Reason.DITTO_WITHOUT_VALUE])


def test_ditto_in_a_name_column_is_not_allowed() -> None:
    rows = [{"name": "Josep Puig"}, {"name": "id.", "age": "3"}, {"name": "id. id."}]
    cells, _ = interpret(page(rows), CATALAN)
    for row in (1, 2):
        assert by_field(cells, row)["name"].reasons == [Reason.DITTO_NOT_ALLOWED]
        assert by_field(cells, row)["name"].value is None


# --- consistency rules ----------------------------------------------------------------------


def test_age_matches_birth_date_within_a_year() -> None:
    cells, _ = interpret(page([
        {"name": "Josep Puig", "age": "40", "birth_date": "12-3-1890"},  # 1930 - 1890 = 40
        {"name": "Anna Roca", "age": "39", "birth_date": "30-12-1890"},  # birthday after the register day
        {"name": "Joan Puig", "age": "8 mesos", "birth_date": "2-4-1930"},
        {"name": "Pere Puig", "age": "25", "birth_date": "1-1-1890"},  # 15 years off
    ]), CATALAN)
    for row in (0, 1, 2):
        assert by_field(cells, row)["age"].reasons == []
        assert by_field(cells, row)["birth_date"].reasons == []
    assert by_field(cells, 3)["age"].reasons == [Reason.AGE_BIRTH_MISMATCH]
    assert by_field(cells, 3)["birth_date"].reasons == [Reason.AGE_BIRTH_MISMATCH]


def test_age_birth_rule_uses_ditto_resolved_dates_and_skips_invalid() -> None:
    cells, _ = interpret(page([
        {"name": "Josep Puig", "age": "40", "birth_date": "12-3-1890"},
        {"name": "Jaume Puig", "age": "12", "birth_date": "id."},  # twin by ditto, but aged 12
        {"name": "Anna Roca", "age": "30", "birth_date": "31-2-1900"},  # the date is invalid already
    ]), CATALAN)
    assert by_field(cells, 1)["age"].reasons == [Reason.AGE_BIRTH_MISMATCH]
    assert by_field(cells, 2)["age"].reasons == []
    assert by_field(cells, 2)["birth_date"].reasons == [Reason.INVALID_DATE]


def household(address: str, *members: tuple[str, str, str]) -> list[dict[str, str]]:
    rows = [{"name": name, "relation": relation, "age": age, "address": '"'}
            for name, relation, age in members]
    rows[0]["address"] = address
    return rows


def test_child_older_than_head_or_spouse_is_flagged() -> None:
    cells, _ = interpret(page(household(
        "carrer Major, 12",
        ("Josep Puig", "cap", "52"), ("Maria Vila", "muller", "38"),
        ("Joan Puig", "fill", "40"),  # older than his mother
        ("Anna Puig", "filla", "12"),
        ("Rosa Vila", "mare", "75"),  # the head's mother is older, as she should be
    )), CATALAN)
    assert by_field(cells, 2)["age"].reasons == [Reason.CHILD_OLDER_THAN_PARENT]
    assert by_field(cells, 3)["age"].reasons == []
    assert by_field(cells, 4)["age"].reasons == []


def test_child_rule_compares_within_each_household() -> None:
    cells, _ = interpret(page([
        *household("carrer Major, 12", ("Josep Puig", "cap", "70"), ("Pere Puig", "fill", "45")),
        *household("carrer Nou, 3", ("Joan Roca", "cap", "30"), ("Anna Roca", "filla", "5")),
    ]), CATALAN)
    assert all(by_field(cells, row)["age"].reasons == [] for row in range(4))


def test_new_household_must_start_with_its_head() -> None:
    rows = [
        # continues a household from the previous page
        {"name": "Anna Roca", "relation": "filla", "age": "9", "address": "carrer Nou, 3"},
        *household("plaça del Mercat, 7", ("Maria Vila", "muller", "38"), ("Josep Puig", "cap", "40")),
        *household("carrer del Mar, 5", ("Pere Soler", "cap", "60")),
    ]
    cells, _ = interpret(page(rows), CATALAN)
    assert by_field(cells, 0)["relation"].reasons == []
    assert by_field(cells, 1)["relation"].reasons == [Reason.HEAD_NOT_FIRST]
    assert by_field(cells, 2)["relation"].reasons == []
    assert by_field(cells, 3)["relation"].reasons == []


def test_households_split_at_heads_and_new_addresses() -> None:
    rows = [
        *household("carrer Major, 12", ("Josep Puig", "cap", "40"), ("Maria Vila", "muller", "38")),
        {"name": "Pere Soler", "relation": "cap", "age": "60", "address": "id."},  # same building
        {"name": "Rosa Pla", "relation": "hostatger", "age": "30", "address": "passeig de Gràcia, 50"},
    ]
    cells, _ = interpret(page(rows), CATALAN)
    groups = households_on_page(_rows(cells), CATALAN)
    assert [[row.row for row in group] for group in groups] == [[0, 1], [2], [3]]


def test_sex_must_match_the_given_name_and_the_relation() -> None:
    cells, _ = interpret(page([
        {"name": "Josep Puig", "relation": "cap", "sex": "H"},
        {"name": "Maria Vila", "relation": "muller", "sex": '"'},  # the ditto copies the head's sex
        {"name": "Puig Vila, Anna", "relation": "filla", "sex": "D"},  # surnames first
        {"name": "Joan Puig", "relation": "filla", "sex": "H"},  # the relation says a daughter
        {"name": "Xènia Puig", "relation": "fill", "sex": "H"},  # not a lexicon name: the relation decides
        {"name": "Nombre Raro", "relation": "dispesera", "sex": "D"},  # nothing implies a sex
    ]), CATALAN)
    flagged = [row for row in range(6) if Reason.SEX_MISMATCH in by_field(cells, row)["sex"].reasons]
    assert flagged == [1, 3]
    assert by_field(cells, 1)["name"].reasons == [Reason.SEX_MISMATCH]  # the disagreeing cell too
    assert by_field(cells, 1)["relation"].reasons == []
    assert by_field(cells, 3)["relation"].reasons == [Reason.SEX_MISMATCH]
    assert by_field(cells, 3)["name"].reasons == []
    assert by_field(cells, 1)["sex"].value == "M"  # kept as copied: the reviewer decides


def test_given_names_borne_by_one_sex_only_imply_it() -> None:
    assert given_name_sex("Josep Maria Puig") == "M"  # the first given name decides
    assert given_name_sex("Puig i Ferrer, Maria Rosa") == "F"
    assert given_name_sex("Puig") is None and given_name_sex("") is None


@pytest.mark.parametrize(("key", "text"), [("name", "11"), ("birth_place", "11"), ("occupation", "1."),
                                           ("address", "11")])
def test_a_reading_without_letters_is_no_word_value(key: str, text: str) -> None:
    """A ditto's two strokes are easily read '11': no value of a column of words, so it goes to review."""
    parsed = parse_value(text, CATALAN.column(key), CATALAN.register_year, CATALAN.language)
    assert parsed.reasons == [Reason.NO_LETTERS] and parsed.value == text


def test_rules_apply_only_when_the_template_lists_them() -> None:
    no_rules = Template.model_validate({**CATALAN.model_dump(), "rules": []})
    cells, _ = interpret(page([{"name": "Pere Puig", "age": "25", "birth_date": "1-1-1890"}]), no_rules)
    assert by_field(cells, 0)["age"].reasons == []


# --- persons and the stage contract ---------------------------------------------------------


def test_persons_one_per_written_row_with_provenance() -> None:
    cells = page([
        {"name": "JOSEP PUIG I SERRA", "relation": "Cap", "sex": "H", "age": "40", "birth_date": "12-3-1890",
         "birth_place": "Barcelna", "marital_status": "casat", "occupation": "jornaler", "literacy": "sí",
         "address": "C/ Major, 12", "residence_years": "40"},
        {"name": "Maria Vila", "relation": "muller", "sex": "D", "age": "38", "address": "id."},
        {},  # a blank register row
    ])
    interpreted, persons = interpret(cells, CATALAN)
    assert [person.row for person in persons] == [0, 1]
    head = persons[0]
    assert head.values == {
        "num": None, "can_read": None, "can_write": None,  # columns of other forms: nothing written
        "name": "Josep Puig i Serra", "relation": "head", "sex": "M", "age": 40, "birth_date": "1890-03-12",
        "birth_place": "Barcelona", "marital_status": "married", "occupation": "jornaler",
        "literacy": "reads_writes", "address": "carrer Major, 12", "residence_years": 40}
    assert head.cell_ids == {cell.field: cell.cell_id for cell in interpreted if cell.row == 0}
    assert head.row_bbox == BBox(x0=0, y0=0, x1=100 * (len(KEYS) - 1) + 90, y1=35)
    assert head.household_id is None and head.page_id == PAGE
    spouse = persons[1]
    assert spouse.values["address"] == "carrer Major, 12"
    assert spouse.values["birth_date"] is None


def test_interpret_returns_copies_in_input_order_and_keeps_literals() -> None:
    cells = list(reversed(page([{"name": "josep puig", "age": "3 m."}, {"name": "Anna Roca", "age": "id."}])))
    interpreted, _ = interpret(cells, CATALAN)
    assert [cell.cell_id for cell in interpreted] == [cell.cell_id for cell in cells]
    assert [cell.text for cell in interpreted] == [cell.text for cell in cells]
    assert all(cell.value is None for cell in cells)  # inputs untouched
    assert {cell.status for cell in interpreted} == {cell.status for cell in cells}
    ages = {cell.row: cell.value for cell in interpreted if cell.field == "age"}
    assert ages == {0: 0, 1: 0}


def test_blank_illegible_and_unmapped_cells() -> None:
    cells = [make_cell(0, "name", "Josep Puig"), make_cell(0, "age", "???"), make_cell(0, "sex", ""),
             make_cell(0, None, "  nota  marginal ", col=len(KEYS))]
    interpreted, persons = interpret(cells, CATALAN)
    assert [cell.value for cell in interpreted] == ["Josep Puig", None, None, "nota marginal"]
    assert all(cell.reasons == [] for cell in interpreted)  # routing adds 'illegible'
    assert "age" in persons[0].values and None not in persons[0].values


def test_spanish_template_rows() -> None:
    rows = [{"name": "JOSÉ GARCÍA LÓPEZ", "relation": "jefe", "sex": "V", "age": "45 años",
             "birth_date": "3 de julio de 1885", "birth_place": "Zaragoza", "marital_status": "casado",
             "occupation": "jornalero", "literacy": "sabe", "address": "C/ Mayor, 7",
             "residence_years": "20"},
            {"name": "Carmen Ruiz Pérez", "relation": "esposa", "sex": "hembra", "age": "40",
             "birth_date": "id.", "birth_place": "id.", "marital_status": "casada",
             "occupation": "SUS LABORES", "literacy": "no", "address": "id.", "residence_years": "id."}]
    cells, persons = interpret(page(rows), SPANISH)
    assert persons[0].values["address"] == "calle Mayor, 7"
    assert persons[0].values["literacy"] == "reads_writes"
    assert persons[1].values["occupation"] == "sus labores"
    # the ditto'd birth date gives 1885, but she is 40: both cells go to review
    assert Reason.AGE_BIRTH_MISMATCH in by_field(cells, 1)["age"].reasons


def test_synthetic_clerk_rows_parse_back_to_their_typed_values() -> None:
    """Every literal the synthetic page generator writes (dittos, date styles, '3 m.', vocabulary
    forms, addresses with floors) must parse back to the value it stands for, with no reason."""
    synth = pytest.importorskip("pipeline.synth.households")
    import numpy as np

    for template in (CATALAN, SPANISH):
        keys = [column.key for column in template.columns]
        for seed in range(20):
            rng = np.random.default_rng(seed)
            setting = synth.make_setting(rng, template)
            rows = synth.write_rows(rng, template, setting, synth.make_people(rng, setting, 25))
            cells = [make_cell(index, key, row[key].text, col=keys.index(key))
                     for index, row in enumerate(rows) for key in keys]
            interpreted, _ = interpret(cells, template)
            for cell in interpreted:
                expected = rows[cell.row][cell.field].value
                assert cell.reasons == [], (template.name, seed, cell)
                if expected not in (None, ""):
                    assert cell.value == expected, (template.name, seed, cell.text)


VALUE_TYPES = {"age": int, "number": int}


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), text=st.text(max_size=40))
def test_any_reading_gives_a_typed_value_or_a_reason_never_an_error(key: str, text: str) -> None:
    """A bad cell never fails a page: whatever the recogniser read, parsing returns."""
    column = CATALAN.column(key)
    parsed = parse_value(text, column, CATALAN.register_year, CATALAN.language)
    assert parsed.value is not None or parsed.reasons
    if parsed.value is not None:
        assert isinstance(parsed.value, VALUE_TYPES.get(column.type, str))
    assert set(parsed.reasons) <= {reason.value for reason in Reason}


def test_a_column_the_template_does_not_know_is_read_as_text_into_the_person() -> None:
    extra = len(KEYS)  # a printed column after the template's (pipeline.stages.columns kept it)
    cells = [*page([{"name": "Pere Puig"}, {"name": "Anna Puig"}]),
             make_cell(0, "extra_observacions", " transeünt ", col=extra),
             make_cell(1, "extra_observacions", "id.", col=extra)]
    interpreted, persons = interpret(cells, CATALAN)
    first, second = (by_field(interpreted, row)["extra_observacions"] for row in (0, 1))
    assert first.value == "transeünt" and first.reasons == []
    assert second.value == "transeünt" and second.value_from == first.cell_id  # a ditto, like any text cell
    assert [person.values["extra_observacions"] for person in persons] == ["transeünt", "transeünt"]
    assert persons[1].cell_ids["extra_observacions"] == second.cell_id
