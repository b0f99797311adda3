"""Lexicons of names, places, occupations and streets found in 1880–1940 Catalan, Spanish and
French population registers. Used to snap recognised text to known spellings (fields stage)
and to fill synthetic register pages (pipeline.synth).

Each lexicon is a plain UTF-8 `<name>.txt` file in this folder, one entry per line. A few
lexicons are unions of others (e.g. `given_names` = every `given_names_<lang>_<sex>` file),
so the per-language/sex files stay the single source of truth.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path

from pipeline.errors import UsageError

LEXICONS_DIR = Path(__file__).parent

# union lexicon -> the file lexicons it concatenates (order kept, duplicates dropped)
_UNIONS: dict[str, tuple[str, ...]] = {
    "given_names_m": ("given_names_ca_m", "given_names_es_m", "given_names_fr_m"),
    "given_names_f": ("given_names_ca_f", "given_names_es_f", "given_names_fr_f"),
    "given_names": ("given_names_ca_m", "given_names_ca_f", "given_names_es_m",
                    "given_names_es_f", "given_names_fr_m", "given_names_fr_f"),
    "surnames": ("surnames_ca", "surnames_es"),
    "places": ("places_ca", "places_es", "places_other"),
    "occupations": ("occupations_ca", "occupations_es"),
    "streets": ("streets_ca", "streets_es", "streets_fr"),
}


def _file_lexicons() -> list[str]:
    return sorted(path.stem for path in LEXICONS_DIR.glob("*.txt"))


def lexicon_names() -> list[str]:
    """Every lexicon name `load_lexicon` accepts."""
    return sorted({*_file_lexicons(), *_UNIONS})


def _read_entries(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    # NFC so that 'à' typed as a + combining grave compares equal to the precomposed form
    return [unicodedata.normalize("NFC", line.strip()) for line in lines if line.strip()]


def _dedupe(entries: list[str]) -> list[str]:
    return list(dict.fromkeys(entries))


@cache
def _load(name: str) -> tuple[str, ...]:
    if name in _UNIONS:
        return tuple(_dedupe([entry for part in _UNIONS[name] for entry in _load(part)]))
    path = LEXICONS_DIR / f"{name}.txt"
    # Names come from templates (user files): only plain names of files in this folder, so a
    # name like '../../x' cannot read outside it.
    if name not in _file_lexicons() or not path.is_file():
        raise UsageError(f"unknown lexicon {name!r}; known: {', '.join(lexicon_names())}")
    return tuple(_dedupe(_read_entries(path)))


def load_lexicon(name: str) -> list[str]:
    """Entries of lexicon `name` (NFC, unique, file order); UsageError if it does not exist."""
    return list(_load(name))
