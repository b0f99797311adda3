"""Lexicons: every lexicon loads, is non-empty, NFC, without duplicates; unions and errors."""

import unicodedata

import pytest

from pipeline.errors import UsageError
from pipeline.lexicons import LEXICONS_DIR, lexicon_names, load_lexicon

REQUIRED = ["given_names", "surnames", "places", "occupations", "streets"]


def test_required_lexicons_exist() -> None:
    assert set(REQUIRED) <= set(lexicon_names())


@pytest.mark.parametrize("name", lexicon_names())
def test_lexicon_clean(name: str) -> None:
    entries = load_lexicon(name)
    assert entries, name
    assert all(entry == unicodedata.normalize("NFC", entry) for entry in entries)
    assert all(entry == entry.strip() and entry for entry in entries)
    assert len(entries) == len(set(entries)), [e for e in entries if entries.count(e) > 1]


@pytest.mark.parametrize("path", sorted(LEXICONS_DIR.glob("*.txt")), ids=lambda p: p.stem)
def test_files_have_no_duplicate_lines(path) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) == len(set(lines))


def test_sizes_and_samples() -> None:
    assert len(load_lexicon("given_names")) >= 300
    assert len(load_lexicon("surnames")) >= 300
    assert {"Josep", "Josefa", "Montserrat", "Concepció", "José", "Carmen"} <= set(load_lexicon("given_names"))
    assert {"Puig", "Martí", "Fernández", "Sánchez"} <= set(load_lexicon("surnames"))
    assert {"Barcelona", "Almería", "Reus"} <= set(load_lexicon("places"))
    assert {"jornaler", "sus labores", "pagès"} <= set(load_lexicon("occupations"))


def test_given_names_is_union_of_language_sex_files() -> None:
    parts = [n for n in lexicon_names() if n.startswith("given_names_") and n.count("_") == 3]
    assert len(parts) == 6
    union = {entry for part in parts for entry in load_lexicon(part)}
    assert set(load_lexicon("given_names")) == union
    assert "Marcel·lí" in load_lexicon("given_names_m")


def test_returns_copy_and_unknown_name() -> None:
    first = load_lexicon("places")
    first.append("nowhere")
    assert "nowhere" not in load_lexicon("places")
    with pytest.raises(UsageError):
        load_lexicon("no_such_lexicon")


@pytest.mark.parametrize("union", ["surnames", "places", "occupations", "streets"])
def test_unions_cover_their_language_files(union: str) -> None:
    parts = [n for n in lexicon_names() if n.startswith(union + "_")]
    assert len(parts) >= 2
    assert set(load_lexicon(union)) == {entry for part in parts for entry in load_lexicon(part)}
