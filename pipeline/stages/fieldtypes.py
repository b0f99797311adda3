"""Parsers for the template field types: one literal cell text in, a typed, normalised value
and the reasons it needs a reviewer out (fields stage, see pipeline.stages.fields).

Value types per field type: name/place/occupation/address/text -> str; relation/sex/
marital_status/literacy -> the vocabulary's canonical key (str); age/number -> int; date ->
ISO 8601 str ('YYYY-MM-DD', 'YYYY-MM' or 'YYYY'). Every parser works on Catalan, Spanish and
French spellings, compares accent- and case-insensitively, and never raises on bad input: it
returns a `Reason` instead, so a bad cell goes to review and never fails a page.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any


class Reason(StrEnum):
    """Why a cell goes to review; descriptions for reviewers are in `pipeline.stages.route.REASONS`."""

    LOW_CONFIDENCE = "low-confidence"
    ILLEGIBLE = "illegible"
    UNKNOWN_VOCABULARY = "unknown-vocabulary"
    VOCABULARY_UNCERTAIN = "vocabulary-uncertain"
    INVALID_AGE = "invalid-age"
    INVALID_DATE = "invalid-date"
    DATE_CENTURY_GUESSED = "date-century-guessed"
    INVALID_NUMBER = "invalid-number"
    LEXICON_UNCERTAIN = "lexicon-uncertain"
    DITTO_WITHOUT_VALUE = "ditto-without-value"
    DITTO_NOT_ALLOWED = "ditto-not-allowed"
    AGE_BIRTH_MISMATCH = "age-birth-mismatch"
    CHILD_OLDER_THAN_PARENT = "child-older-than-parent"
    HEAD_NOT_FIRST = "head-not-first"
    NO_LETTERS = "no-letters"
    SEX_MISMATCH = "sex-mismatch"
    UNFAMILIAR_HAND = "unfamiliar-hand"


@dataclass(frozen=True)
class Parsed:
    value: Any
    reasons: list[str] = field(default_factory=list)


MAX_AGE = 110

# --- text normalisation ---------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Literal text with runs of whitespace collapsed (NFC, so accents compare as one form)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Març' and 'MARC' both give 'marc'."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(stripped.casefold().replace("’", "'").split())


@lru_cache(maxsize=1 << 14)  # every vocabulary cell looks up its column's ~60 spellings again
def key_form(text: str) -> str:
    """`fold` with punctuation turned into spaces: 'L.E.' -> 'l e', 'petit-fils' -> 'petit fils'."""
    return " ".join(re.sub(r"[^\w]+", " ", fold(text)).split())


# --- ditto marks and illegible readings -----------------------------------------------------

# Whole-cell texts meaning "same as the row above" (compared after `fold`, dots and spaces kept out).
DITTO_MARKS = frozenset({
    "id", "idem", "ydem", "item", "do", "d°", "do°",
})


_QUOTE_MARKS = frozenset('"\'〃„“”«»')


def _compact(text: str) -> str:
    return fold(text).replace(".", "").replace(" ", "")


def is_ditto(text: str) -> bool:
    compact = _compact(text)
    return compact in DITTO_MARKS or _is_quote_run(compact)


def is_quote_ditto(text: str) -> bool:
    """A ditto drawn as strokes: a run of quote marks ('"', '〃', '„', '""') is one ditto, however many strokes
    the writer made and whichever quote glyph a transcription gives them."""
    return _is_quote_run(_compact(text))


def _is_quote_run(compact: str) -> bool:
    return bool(compact) and set(compact) <= _QUOTE_MARKS


def is_illegible(text: str) -> bool:
    """Nothing readable: empty, or only '?', dots, dashes and other marks that are no ditto."""
    stripped = text.strip()
    return not stripped or (not any(char.isalnum() for char in stripped) and not is_ditto(stripped))


# --- vocabularies (relation, sex, marital status, literacy) ---------------------------------

VOCABULARY_SURE = 85  # rapidfuzz ratio from which a fuzzy vocabulary match is taken as is
VOCABULARY_POSSIBLE = 70  # ... and from which it is taken but sent to review


@dataclass(frozen=True)
class VocabularyIndex:
    variants: dict[str, str]  # key_form of a variant -> canonical key


def vocabulary_index(vocabulary: dict[str, list[str]]) -> VocabularyIndex:
    variants: dict[str, str] = {}
    for canonical, spellings in vocabulary.items():
        for spelling in [canonical, *spellings]:
            variants.setdefault(key_form(str(spelling)), canonical)
    return VocabularyIndex(variants={form: key for form, key in variants.items() if form})


def parse_vocabulary(text: str, vocabulary: dict[str, list[str]]) -> Parsed:
    """Map a reading to its canonical key: exact, abbreviation ('solt.'), then fuzzy match."""
    from rapidfuzz import fuzz, process

    index = vocabulary_index(vocabulary)
    form = key_form(text)
    if form in index.variants:
        return Parsed(index.variants[form])
    abbreviated = _abbreviation_match(text, form, index)
    if abbreviated is not None:
        return Parsed(abbreviated)
    if len(form) >= 3:  # one- and two-letter codes (H, D, V, S...) only match exactly
        matches = process.extract(form, list(index.variants), scorer=fuzz.ratio, limit=5)
        best = _unambiguous_best(matches, index)
        if best is not None and best[1] >= VOCABULARY_SURE:
            return Parsed(index.variants[best[0]])
        if best is not None and best[1] >= VOCABULARY_POSSIBLE:
            return Parsed(index.variants[best[0]], [Reason.VOCABULARY_UNCERTAIN.value])
    return Parsed(clean_text(text), [Reason.UNKNOWN_VOCABULARY.value])


def _abbreviation_match(text: str, form: str, index: VocabularyIndex) -> str | None:
    """'solt.' or 'cas.': a dotted prefix of variants that all share one canonical key."""
    if not text.strip().endswith(".") or len(form) < 3 or " " in form:
        return None
    keys = {key for variant, key in index.variants.items() if variant.startswith(form)}
    return keys.pop() if len(keys) == 1 else None


def _unambiguous_best(matches: list[tuple[str, float, int]],
                      index: VocabularyIndex) -> tuple[str, float] | None:
    """Best match, unless a different canonical key scores almost as well."""
    if not matches:
        return None
    best_variant, best_score, _ = matches[0]
    for variant, score, _ in matches[1:]:
        if index.variants[variant] != index.variants[best_variant] and best_score - score < 5:
            return None
    return best_variant, best_score


# --- ages and numbers -----------------------------------------------------------------------

_YEARS = r"(?:a|an|any|anys|ano|anos|ans|años)"
_MONTHS = r"(?:m|mes|mesos|meses|mois)"
_DAYS = r"(?:d|dia|dies|dias|j|jour|jours|s|set|setm|setmana|setmanes|sem|semana|semanas|semaine|semaines)"
_AND = r"(?:\s*(?:,|i|y|et)?\s*)"
_HALF = r"(?:\s*(?:1/2|½|y medio|i mig))?"
_YEARS_RE = re.compile(rf"(\d{{1,3}}){_HALF}\s*(?:{_YEARS}\.?)?(?:{_AND}(?<!\d)\d{{1,2}}\s*{_MONTHS}\.?)?")
_MONTHS_RE = re.compile(rf"(\d{{1,3}})\s*{_MONTHS}\.?(?:{_AND}(?<!\d)\d{{1,2}}\s*{_DAYS}\.?)?")
_DAYS_RE = re.compile(rf"\d{{1,3}}\s*{_DAYS}\.?")


def _whole_years(text: str) -> int | None:
    """Completed years in '34', '34 anys', '2 a. 3 m.', '8 mesos' (0), '15 días' (0); else None."""
    form = fold(text)
    if match := _YEARS_RE.fullmatch(form):
        return int(match.group(1))
    if match := _MONTHS_RE.fullmatch(form):
        return int(match.group(1)) // 12
    if _DAYS_RE.fullmatch(form):
        return 0
    return None


def parse_age(text: str) -> Parsed:
    """Age in completed years, 0–110; infants' ages written in months or days give 0."""
    years = _whole_years(text)
    if years is None or years > MAX_AGE:
        return Parsed(None, [Reason.INVALID_AGE.value])
    return Parsed(years)


def parse_number(text: str) -> Parsed:
    """A non-negative integer, optionally with a unit ('12', '5 anys', 'núm. 3')."""
    form = re.sub(r"^(?:num|n|no)\b\.?\s*", "", fold(text).replace("°", ""))
    if re.fullmatch(r"\d{1,3}(?:[.\s]\d{3})+", form):  # thousands separators
        return Parsed(int(re.sub(r"\D", "", form)))
    years = _whole_years(form)
    return Parsed(years) if years is not None else Parsed(None, [Reason.INVALID_NUMBER.value])


# --- dates ----------------------------------------------------------------------------------

_MONTH_WORDS: dict[int, tuple[str, ...]] = {
    1: ("gener", "enero", "janvier", "gen", "ene", "janv", "jan", "jer"),
    2: ("febrer", "febrero", "fevrier", "febr", "feb", "fevr", "fev", "fer"),
    3: ("marc", "marzo", "mars", "mzo", "mar"),
    4: ("abril", "avril", "abr", "avr"),
    5: ("maig", "mayo", "mai", "my"),
    6: ("juny", "junio", "juin", "jun"),
    7: ("juliol", "julio", "juillet", "jul", "juil", "jet", "jlet"),
    8: ("agost", "agosto", "aout", "ag", "ago"),
    # '7bre', '8bre', '9bre', 'Xbre': the old numeric abbreviations of the last four months;
    # 'Jer', 'fer', 'Jet': French abbreviations whose superscript ending was read inline
    9: ("setembre", "septiembre", "setiembre", "septembre", "set", "sep", "sept", "setbre", "7bre"),
    10: ("octubre", "octobre", "oct", "obre", "8bre"),
    11: ("novembre", "noviembre", "nov", "nbre", "9bre"),
    12: ("desembre", "diciembre", "decembre", "des", "dic", "dec", "dbre", "xbre", "10bre"),
}
MONTHS: dict[str, int] = {word: number for number, words in _MONTH_WORDS.items() for word in words}
_ROMAN_MONTHS = {roman: number for number, roman in enumerate(
    ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii"), start=1)}

_NUMERIC_DATE = re.compile(r"(\d{1,2})\s*[-/.]\s*(\d{1,2}|[ivx]{1,4})\s*[-/.]\s*(\d{4}|\d{2})")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_WORDED_DATE = re.compile(
    r"(?:(\d{1,2})\s*(?:er|r|o|°|a)?\.?\s+)?(?:de\s+)?"  # day: '1er', '1r', '1º', '12 de'
    r"([a-z0-9]*[a-z][a-z0-9]*)\.?\s+(?:de\s+|del\s+)?(\d{4}|\d{2})")  # month word, year


def month_number(word: str) -> int | None:
    """Month of a Catalan/Spanish/French name or abbreviation, tolerating a misspelt full name."""
    from rapidfuzz import fuzz, process

    if word in MONTHS:
        return MONTHS[word]
    if word in _ROMAN_MONTHS:
        return _ROMAN_MONTHS[word]
    if len(word) < 5:
        return None
    full_names = [name for name in MONTHS if len(name) >= 5 and not name[0].isdigit()]
    matches = process.extract(word, full_names, scorer=fuzz.ratio, limit=3, score_cutoff=75)
    numbers = {MONTHS[name] for name, score, _ in matches if score >= matches[0][1] - 5} if matches else set()
    return numbers.pop() if len(numbers) == 1 else None


def parse_date(text: str, register_year: int | None) -> Parsed:
    """'12-3-1890', '12/III/90', '12 de març de 1890', '1er mars 1890', 'marzo 1890', '1890'."""
    form = fold(text).replace("d'", "de ").replace(",", " ")
    form = " ".join(form.split())
    parts = _date_parts(form)
    if parts is None:
        return Parsed(None, [Reason.INVALID_DATE.value])
    day, month, year_text = parts
    year, reasons = _resolve_year(year_text, register_year)
    if not _plausible_date(year, month, day, register_year):
        return Parsed(None, [Reason.INVALID_DATE.value])
    if month is None:
        return Parsed(f"{year:04d}", reasons)
    if day is None:
        return Parsed(f"{year:04d}-{month:02d}", reasons)
    return Parsed(f"{year:04d}-{month:02d}-{day:02d}", reasons)


def _date_parts(form: str) -> tuple[int | None, int | None, str] | None:
    """(day, month, year digits as written) of a folded date text, or None if not a date."""
    if re.fullmatch(r"\d{4}", form):
        return None, None, form
    if match := _ISO_DATE.fullmatch(form):
        return int(match.group(3)), int(match.group(2)), match.group(1)
    if match := _NUMERIC_DATE.fullmatch(form):
        month_text = match.group(2)
        month = int(month_text) if month_text.isdigit() else _ROMAN_MONTHS.get(month_text)
        return (int(match.group(1)), month, match.group(3)) if month else None
    if match := _WORDED_DATE.fullmatch(form):
        month = month_number(match.group(2))
        if month is None:
            return None
        return (int(match.group(1)) if match.group(1) else None), month, match.group(3)
    return None


def _resolve_year(digits: str, register_year: int | None) -> tuple[int, list[str]]:
    """Four digits as written; two digits in the century that puts them at or before the register."""
    if len(digits) == 4:
        return int(digits), []
    if register_year is None:
        return 1900 + int(digits), [Reason.DATE_CENTURY_GUESSED.value]
    year = register_year // 100 * 100 + int(digits)
    return (year - 100 if year > register_year else year), []


def _plausible_date(year: int, month: int | None, day: int | None, register_year: int | None) -> bool:
    """A real calendar date of someone alive at the register: not after it, not over MAX_AGE before."""
    latest, earliest = (register_year, register_year - MAX_AGE) if register_year else (2100, 1700)
    if not earliest <= year <= latest:
        return False
    if month is not None and not 1 <= month <= 12:
        return False
    if day is not None:
        try:
            datetime.date(year, month or 1, day)
        except ValueError:
            return False
    return True


# --- names ----------------------------------------------------------------------------------

NAME_PARTICLES = frozenset({
    "i", "y", "e", "de", "del", "dels", "la", "las", "los", "les", "el", "da", "du", "des"})


def _capitalise(token: str) -> str:
    """'PUIG' / 'puig' -> 'Puig', 'josep-maria' -> 'Josep-Maria'; mixed case is kept as written."""
    if not (token.isupper() or token.islower()):
        return token
    return "-".join(part[:1].upper() + part[1:].lower() for part in token.split("-"))


def normalise_name(text: str) -> str:
    """Spaces collapsed, each name capitalised, particles ('i', 'y', 'de', "d'") in lower case."""
    tokens = clean_text(text).replace("’", "'").split()
    normalised = []
    for position, token in enumerate(tokens):
        lower = token.lower()
        if position > 0 and lower in NAME_PARTICLES:
            normalised.append(lower)
        elif lower.startswith("d'") and len(token) > 2:
            normalised.append("d'" + _capitalise(token[2:]))
        else:
            normalised.append(_capitalise(token))
    return " ".join(normalised)


# --- lexicon snapping -----------------------------------------------------------------------

LEXICON_SURE = 90  # rapidfuzz ratio from which a place/occupation is snapped to the lexicon
LEXICON_POSSIBLE = 75  # between this and LEXICON_SURE: probably a misreading -> review
SURNAMES_LEXICON = "surnames"


@dataclass(frozen=True)
class LexiconIndex:
    entries: dict[str, str]  # key_form -> lexicon spelling (first one wins)
    spellings: dict[str, str]  # casefolded exact spelling -> lexicon spelling

    def exact(self, text: str) -> str | None:
        """The entry spelt like `text` (case aside), else the one equal without accents.

        Exact spelling first, so that 'València' is not turned into 'Valencia'."""
        return self.spellings.get(clean_text(text).casefold()) or self.entries.get(key_form(text))


@cache
def lexicon_index(name: str) -> LexiconIndex:
    from pipeline.lexicons import load_lexicon

    entries: dict[str, str] = {}
    spellings: dict[str, str] = {}
    for entry in load_lexicon(name):
        entries.setdefault(key_form(entry), entry)
        spellings.setdefault(entry.casefold(), entry)
    return LexiconIndex(entries=entries, spellings=spellings)


def snap_phrase(text: str, lexicon: str) -> Parsed:
    """Place or occupation: the lexicon's spelling when close, else the literal (cleaned).

    'Alcarràs (Lleida)' is snapped on its first part, the qualifier kept."""
    literal = clean_text(text)
    snapped = _snap_whole(literal, lexicon)
    if snapped.value is None and (split := re.match(r"([^(,]+?)\s*([(,].*)$", literal)):
        head = _snap_whole(split.group(1), lexicon)
        if head.value is not None:
            joiner = " " if split.group(2).startswith("(") else ""
            return Parsed(f"{head.value}{joiner}{split.group(2)}", head.reasons)
    return snapped if snapped.value is not None else Parsed(literal, snapped.reasons)


def _snap_whole(text: str, lexicon: str) -> Parsed:
    """Parsed(lexicon spelling) when sure; Parsed(None, [uncertain]) when mediocre; Parsed(None)."""
    from rapidfuzz import fuzz, process

    index = lexicon_index(lexicon)
    form = key_form(text)
    if exact := index.exact(text):
        return Parsed(exact)
    best = process.extractOne(form, list(index.entries), scorer=fuzz.ratio, score_cutoff=LEXICON_POSSIBLE)
    if best is None or len(form) < 3:
        return Parsed(None)
    if best[1] >= LEXICON_SURE:
        return Parsed(index.entries[best[0]])
    return Parsed(None, [Reason.LEXICON_UNCERTAIN.value])


@cache
def name_words(lexicon: str) -> LexiconIndex:
    """Single words of a name lexicon: 'Joan Baptista' makes 'Baptista' a known given name."""
    from pipeline.lexicons import load_lexicon

    entries: dict[str, str] = {}
    spellings: dict[str, str] = {}
    for entry in load_lexicon(lexicon):
        for word in clean_text(entry).split():
            if word.casefold() not in NAME_PARTICLES:
                entries.setdefault(key_form(word), word)
                spellings.setdefault(word.casefold(), word)
    return LexiconIndex(entries=entries, spellings=spellings)


def _name_token_limit(length: int) -> int:
    """Edits allowed to snap a name token: none under 5 letters ('Vila' / 'Vilà' / 'Vilar' are
    all real surnames), 1 up to 8, 2 from 9."""
    return 0 if length < 5 else (1 if length < 9 else 2)


def snap_name_token(token: str, lexicon: str) -> str | None:
    """The lexicon spelling of a name token when it is very close and unambiguous, else None."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    index = name_words(lexicon)
    if exact := index.exact(token):
        return exact
    form = key_form(token)
    limit = _name_token_limit(len(form))
    if limit == 0:
        return None
    matches = process.extract(form, list(index.entries), scorer=Levenshtein.distance,
                              score_cutoff=limit, limit=2)
    if not matches or (len(matches) > 1 and matches[1][1] == matches[0][1]):
        return None
    best = matches[0][0]
    # a name that only adds or drops an ending is another real name: Vila/Vilar, Fuente/Fuentes
    if best.startswith(form) or form.startswith(best):
        return None
    return index.entries[best]


def parse_name(text: str, given_lexicon: str | None) -> Parsed:
    """Normalised name, each token snapped to a very close given name / surname.

    'Josep Puig i Ferrer': first token(s) given names, the rest surnames; 'Puig Ferrer, Josep'
    (surnames first, comma) is understood too. Without a lexicon only normalisation happens."""
    name = normalise_name(text)
    if given_lexicon is None:
        return Parsed(name)
    if "," in name:
        surnames, _, given = name.partition(",")
        return Parsed(f"{_snap_tokens(surnames.split(), given_lexicon, given_first=False)}, "
                      f"{_snap_tokens(given.split(), given_lexicon, given_first=True)}")
    return Parsed(_snap_tokens(name.split(), given_lexicon, given_first=True))


def given_name_sex(name: str) -> str | None:
    """'M' or 'F' when the first given name of a normalised name ('Josep Puig', 'Puig, Maria') is
    borne by one sex only in the given-name lexicons; None when by both, by neither, or no name.
    Accents count: Marià is a man, Maria a woman."""
    given = name.partition(",")[2] if "," in name else name
    first = clean_text(given).split()[:1]
    return _given_name_sexes().get(first[0].casefold()) if first else None


@cache
def _given_name_sexes() -> dict[str, str]:
    from pipeline.lexicons import load_lexicon

    sexes: dict[str, set[str]] = {}
    for sex in ("M", "F"):
        for entry in load_lexicon(f"given_names_{sex.lower()}"):
            sexes.setdefault(entry.split()[0].casefold(), set()).add(sex)
    return {name: next(iter(both)) for name, both in sexes.items() if len(both) == 1}


def _snap_tokens(tokens: list[str], given_lexicon: str, given_first: bool) -> str:
    given, surnames = name_words(given_lexicon), name_words(SURNAMES_LEXICON)
    snapped = []
    in_given = given_first
    for position, token in enumerate(tokens):
        if position > 0 and token in NAME_PARTICLES:
            snapped.append(token)
            continue
        # compound given names ('Maria Rosa') go on while tokens are known given names
        in_given = in_given and (position == 0 or given.exact(token) is not None)
        if token.casefold() in given.spellings or token.casefold() in surnames.spellings:
            snapped.append(token)  # spelt as some known name: right as written ('León', not 'Léon')
            continue
        own, other = (given_lexicon, SURNAMES_LEXICON) if in_given else (SURNAMES_LEXICON, given_lexicon)
        match = snap_name_token(token, own) or name_words(other).exact(token)
        snapped.append(_keep_case_style(match, token) if match else token)
    return " ".join(snapped)


def trailing_dittos(text: str) -> tuple[str, int]:
    """('Maria', 2) for 'Maria id. id.': the name written, and how many ditto marks follow it."""
    tokens = clean_text(text).split()
    count = 0
    while count < len(tokens) and is_ditto(tokens[len(tokens) - 1 - count]):
        count += 1
    return " ".join(tokens[:len(tokens) - count]), count


def surnames_of(name: str, given_lexicon: str | None) -> str:
    """The surnames of a normalised name, with their particles: 'Puig i Serra' of 'Josep Puig i
    Serra', 'de la Fuente García' of 'Juan de la Fuente García' (Iberian convention: the last two
    names are surnames, unless the first of them is only known as a given name: 'Josep Maria Puig')."""
    tokens = name.split()
    names = [index for index, token in enumerate(tokens) if index == 0 or token not in NAME_PARTICLES]
    if len(names) < 2:
        return ""
    start = names[-2] if len(names) >= 3 else names[-1]
    if start == names[-2] and given_lexicon and _only_given_name(tokens[start], given_lexicon):
        start = names[-1]
    while start > 1 and tokens[start - 1] in NAME_PARTICLES - {"i", "y", "e"}:
        start -= 1  # 'de la' belongs to the surname
    return " ".join(tokens[start:])


def _only_given_name(token: str, given_lexicon: str) -> bool:
    known_given = name_words(given_lexicon).exact(token) is not None
    return known_given and name_words(SURNAMES_LEXICON).exact(token) is None


def _keep_case_style(match: str, token: str) -> str:
    """Lexicon spelling, but keep a "d'" particle prefix as the token had it."""
    return f"d'{match}" if token.lower().startswith("d'") and not match.lower().startswith("d'") else match


# --- addresses ------------------------------------------------------------------------------

# Street-type words and their abbreviations (folded) -> a type shared across languages.
STREET_TYPES: dict[str, str] = {
    **dict.fromkeys(("carrer", "calle", "rue", "c", "cl", "carr", "cal"), "street"),
    **dict.fromkeys(("placa", "plaza", "place", "pl", "pla", "pza", "plza", "pca"), "square"),
    **dict.fromkeys(("passeig", "paseo", "pg", "pso", "po", "pass"), "promenade"),
    **dict.fromkeys(("rambla", "rbla", "rb"), "rambla"),
    **dict.fromkeys(("carretera", "ctra", "crta"), "road"),
    **dict.fromkeys(("avinguda", "avenida", "avenue", "av", "avda", "avgda"), "avenue"),
    **dict.fromkeys(("ronda", "rda"), "ronda"),
    **dict.fromkeys(("cami", "camino", "chemin"), "path"),
    **dict.fromkeys(("riera",), "riera"),
    **dict.fromkeys(("travessera", "trav"), "travessera"),
    **dict.fromkeys(("baixada", "bda"), "baixada"),
    **dict.fromkeys(("pujada",), "pujada"),
}
_STREET_PARTICLES = frozenset({"de", "del", "dels", "la", "les", "las", "los", "el", "d", "l", "du", "des"})
_HOUSE_NUMBER = re.compile(r"[\s,]+(?:(?:n[uú]m|n[º°o]|n)\.?\s*)?(\d.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class StreetEntry:
    spelling: str
    kind: str | None
    core: str  # key_form without street type and leading particles: 'sant pere'


def _street_parts(text: str) -> tuple[str | None, str]:
    """(street type or None, core name) of a street text."""
    words = key_form(text).split()
    kind = STREET_TYPES.get(words[0]) if words else None
    if kind is not None:
        words = words[1:]
    while len(words) > 1 and words[0] in _STREET_PARTICLES:
        words = words[1:]
    return kind, " ".join(words)


@cache
def street_entries(lexicon: str) -> tuple[StreetEntry, ...]:
    from pipeline.lexicons import load_lexicon

    return tuple(StreetEntry(entry, *_street_parts(entry)) for entry in load_lexicon(lexicon))


def parse_address(text: str, lexicon: str | None, language: str = "") -> Parsed:
    """'C/ Major, 12' -> 'carrer Major, 12': the street snapped on its name and type, number kept.

    Where an abbreviation fits streets of several languages ('c. Hospital': carrer or calle),
    the register's `language` decides."""
    literal = clean_text(text)
    if lexicon is None:
        return Parsed(literal)
    if leading := re.match(r"(\d+\s*(?:bis|ter)?),?\s+(\D.*)$", literal):  # French order: '12 rue ...'
        snapped = _snap_street(leading.group(2), lexicon, language)
        return Parsed(f"{leading.group(1)} {snapped.value}" if snapped.value else literal, snapped.reasons)
    number_match = _HOUSE_NUMBER.search(literal)
    street = literal[:number_match.start()] if number_match else literal
    house = number_match.group(1) if number_match else ""
    snapped = _snap_street(street.replace("/", " "), lexicon, language)
    if snapped.value is None:
        return Parsed(literal, snapped.reasons)
    return Parsed(f"{snapped.value}, {house}" if house else snapped.value, snapped.reasons)


def _language_entries(lexicon: str, language: str) -> frozenset[str]:
    """Entries of the register language's part of a lexicon ('streets_ca'), if there is one."""
    from pipeline.lexicons import lexicon_names, load_lexicon

    name = f"{lexicon}_{language}"
    return frozenset(load_lexicon(name)) if language and name in lexicon_names() else frozenset()


def _snap_street(street: str, lexicon: str, language: str) -> Parsed:
    from rapidfuzz import fuzz

    if exact := lexicon_index(lexicon).exact(street):
        return Parsed(exact)
    kind, core = _street_parts(street)
    if len(core) < 3:
        return Parsed(None)
    form = key_form(street)
    # a written street type must agree ('plaça Major' is not 'carrer Major'); none written: any.
    # Equal names ('calle del Hospital', "carrer de l'Hospital") go to the register's language,
    # then to the closer full spelling.
    own = _language_entries(lexicon, language)
    scored = [(fuzz.ratio(core, entry.core), entry.spelling in own,
               fuzz.ratio(form, key_form(entry.spelling)), entry.spelling)
              for entry in street_entries(lexicon) if kind is None or entry.kind == kind]
    best = max(scored, default=None, key=lambda item: item[:3])
    if best is None or best[0] < LEXICON_POSSIBLE:
        return Parsed(None)
    if best[0] >= LEXICON_SURE:
        return Parsed(best[3])
    return Parsed(None, [Reason.LEXICON_UNCERTAIN.value])
