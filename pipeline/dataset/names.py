"""Name normalisation for Catalan/Spanish(/French) registers: folding, particles, clerks'
abbreviations, given-name equivalents across languages, and a phonetic key that merges the
spellings historians meet (b/v, ç/s/z, ll/l·l/ŀl, Puig/Puch, x/j/g, h, y/i, doubled letters).

`name_tokens` turns a written name into keyed tokens; search compares names by these keys.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pydantic import BaseModel

PARTICLES = {"i", "y", "e", "de", "del", "dels", "la", "las", "les", "los", "el", "d", "da", "van", "von"}

# Clerks' abbreviations (folded, without the final dot) -> the full given name.
ABBREVIATIONS = {
    "jph": "josep",
    "josph": "josep",
    "jpha": "josepa",
    "jse": "jose",
    "jo": "josep",
    "jep": "josep",
    "ma": "maria",
    "mª": "maria",
    "mra": "maria",
    "m": "maria",
    "fco": "francisco",
    "franco": "francisco",
    "fsc": "francesc",
    "fca": "francisca",
    "franca": "francesca",
    "ant": "antoni",
    "anto": "antonio",
    "antº": "antonio",
    "anta": "antonia",
    "jn": "joan",
    "jua": "juan",
    "jna": "joana",
    "juna": "juana",
    "pº": "pedro",
    "po": "pere",
    "mgl": "miquel",
    "migl": "miguel",
    "mnl": "manuel",
    "manl": "manuel",
    "jqn": "joaquim",
    "joaqn": "joaquin",
    "rmon": "ramon",
    "bme": "bartomeu",
    "bartme": "bartolome",
    "dom": "domenec",
    "domo": "domingo",
    "vte": "vicente",
    "vnte": "vicente",
    "sto": "santiago",
    "jme": "jaume",
    "jmo": "jaime",
    "tom": "tomas",
    "teres": "teresa",
    "dols": "dolors",
    "dolrs": "dolores",
    "concon": "concepcion",
    "concep": "concepcio",
    "carm": "carme",
    "mrcd": "mercedes",
    "isab": "isabel",
}

# Given names that are the same name in Catalan, Spanish and French (folded); first = canonical.
EQUIVALENT_GIVEN_NAMES = [
    "josep jose josef joseph pep pepe",
    "joan juan jean",
    "jaume jaime jacques",
    "pere pedro pierre",
    "francesc francisco francois",
    "antoni antonio antoine",
    "joaquim joaquin",
    "ramon raymond",
    "miquel miguel michel",
    "lluis luis louis",
    "jordi jorge georges",
    "enric enrique henri",
    "agusti agustin auguste",
    "climent clemente clement",
    "marcel·li marcelino marcel",
    "pau pablo paul",
    "esteve esteban etienne",
    "marti martin",
    "andreu andres andre",
    "bartomeu bartolome",
    "narcis narciso",
    "ignasi ignacio",
    "isidre isidro",
    "vicenç vicente vicent",
    "jacint jacinto",
    "manel manuel",
    "ferran fernando ferdinand",
    "domenec domingo",
    "feliu felix",
    "felip felipe philippe",
    "gaieta cayetano",
    "genis gines",
    "gregori gregorio",
    "guillem guillermo guillaume",
    "llorenç lorenzo laurent",
    "maria marie",
    "maria mariano marius",
    "mateu mateo",
    "nicolau nicolas",
    "pasqual pascual",
    "rafel rafael",
    "ricard ricardo",
    "sebastia sebastian",
    "simo simon",
    "valenti valentin",
    "alfons alfonso alphonse",
    "bernat bernardo bernard",
    "blai blas",
    "cristofor cristobal",
    "emili emilio emile",
    "eduard eduardo edouard",
    "frederic federico",
    "julia julian julien",
    "jeroni jeronimo",
    "baptista bautista baptiste",
    "xavier javier",
    "macia matias",
    "damia damian",
    "didac diego",
    "teodor teodoro",
    "patrici patricio",
    "modest modesto",
    "hilari hilario",
    "innocenci inocencio",
    "florenci florencio",
    "lleo leon",
    "leandre leandro",
    "marc marcos",
    "sixte sixto",
    "sadurni saturnino",
    "cebria cipriano",
    "rossend rosendo",
    "fermi fermin",
    "eusebi eusebio",
    "eladi eladio",
    "anselm anselmo",
    "gervasi gervasio",
    "gabriel",
    "gaspar",
    "salvador",
    "tomas thomas",
    "ubald ubaldo",
    "josepa josefa josephine",
    "teresa therese",
    "dolors dolores",
    "concepcio concepcion",
    "merce mercedes",
    "carme carmen",
    "antonia antoinette",
    "francesca francisca francoise",
    "joana juana jeanne",
    "margarida margarita marguerite",
    "anna ana anne",
    "assumpcio asuncion",
    "caterina catalina catherine",
    "magdalena madeleine",
    "paula pauline",
    "pietat piedad",
    "remei remedios",
    "consol consuelo",
    "cecilia cecile",
    "agnes ines",
    "beatriu beatriz",
    "carlota charlotte",
    "elena helena helene",
    "emilia emilie",
    "enriqueta henriette",
    "eugenia eugenie",
    "ignasia ignacia",
    "llucia lucia lucie",
    "lluisa luisa louise",
    "miquela micaela",
    "neus nieves",
    "trinitat trinidad",
    "encarnacio encarnacion",
    "joaquima joaquina",
    "esperança esperanza",
    "rosa rose",
    "angels angeles",
    "genoveva genevieve",
    "marcel·lina marcelina marcelle",
    "victoria victorine",
    "gracia engracia",
    "consolacio consolacion",
    "rosalia",
    "montserrat",
    "isabel",
    "amalia",
    "eulalia",
    "filomena",
    "matilde mathilde",
]

# Phonetic rewrite rules, applied in order to a folded token (ç already turned into s).
_PHONETIC_RULES = [
    (r"l·l|ŀl|l\.l", "l"),
    (r"ny", "n"),
    (r"ph", "f"),
    (r"th", "t"),
    (r"(ig|tg|tx|ch|g|c|k|q)$", "K"),  # final Puig/Puch/Bosch/Bosc all sound /k/-/tʃ/
    (r"tx|tj|x|j|g(?=[ei])|ch", "J"),
    (r"qu(?=[ei])|c(?=[aou])|qu|q|k|c(?![ei])", "K"),
    (r"c(?=[ei])|z|ss", "s"),
    (r"gu(?=[ei])", "g"),
    (r"gü", "gu"),
    (r"h", ""),
    (r"v|w", "b"),
    (r"y", "i"),
    (r"(?<=[aeiou])n$", ""),  # Martí/Martín, Ramon/Ramón drop alike
    (r"(.)\1+", r"\1"),
]
_COMPILED = [(re.compile(pattern), replacement) for pattern, replacement in _PHONETIC_RULES]


class NameToken(BaseModel):
    folded: str  # accents and case folded, abbreviation expanded
    key: str  # phonetic key (given names: of their canonical cross-language form)
    given: bool


def fold(text: str) -> str:
    """Lower case without accents; ç -> s, ŀl/l·l kept as the digraph 'l·l' for the phonetic key."""
    text = unicodedata.normalize("NFC", text).casefold().replace("ŀl", "l·l").replace("l.l", "l·l")
    text = text.replace("ç", "s").replace("ª", "a").replace("º", "o")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=200_000)
def phonetic(token: str) -> str:
    """Phonetic key of a folded token."""
    key = token
    for pattern, replacement in _COMPILED:
        key = pattern.sub(replacement, key)
    return key.lower()


def _canonical_given() -> dict[str, str]:
    canonical: dict[str, str] = {}
    for group in EQUIVALENT_GIVEN_NAMES:
        names = [fold(name) for name in group.split()]
        # 'ç' is often written without its cedilla: Vicenc, Esperanca
        variants = [fold(name.replace("ç", "c")) for name in group.split() if "ç" in name]
        for name in names + variants:
            canonical.setdefault(name, names[0])
    return canonical


CANONICAL_GIVEN = _canonical_given()
GIVEN_NAMES = set(CANONICAL_GIVEN)


@lru_cache(maxsize=200_000)
def given_key(folded: str) -> str:
    return phonetic(CANONICAL_GIVEN.get(folded, folded))


def _raw_tokens(text: str) -> list[str]:
    folded = fold(text)
    tokens = re.findall(r"[a-z·]+\.?", folded.replace("-", " "))
    words = []
    for token in tokens:
        bare = token.rstrip(".").strip("·")
        if bare and bare not in PARTICLES:
            words.append(
                ABBREVIATIONS.get(bare, bare)
                if token.endswith(".") or bare in ABBREVIATIONS and len(bare) <= 4
                else bare
            )
    return words


@lru_cache(maxsize=500_000)
def name_tokens(name: str) -> tuple[NameToken, ...]:
    """Keyed tokens of a written name. 'Surnames, Given' is reordered; otherwise the last two
    words are surnames when there are three or more (Spanish/Catalan double surname)."""
    if "," in name:
        surnames, _, given = name.partition(",")
        name = f"{given} {surnames}"
    words = _raw_tokens(name)
    n_given = max(1, len(words) - 2) if len(words) >= 3 else 1
    return tuple(
        NameToken(folded=word, key=given_key(word) if i < n_given else phonetic(word), given=i < n_given)
        for i, word in enumerate(words)
    )


def query_keys(word: str) -> set[str]:
    """Every key a query word may match: as a surname and as a given name."""
    return {phonetic(word), given_key(word)}
