"""Person search: Catalan/Spanish spelling variants, filters, ranking, crops, labelled variants."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dataset import datagen
from pipeline.run import store
from pipeline.dataset.name_variants import labelled_queries, make_variant
from pipeline.dataset.names import name_tokens, phonetic
from pipeline.dataset.search import Searcher, SearchQuery, parse_born, search
from pipeline.stages.templates import load_template

# Persons planted with known spellings; queries below must find them despite the variants.
PLANTED = [
    ("Josep Puig i Serra", "1885-04-02", "Vic"),
    ("Maria Dolors Vilà i Bosch", "1878-11-30", "Reus"),
    ("Francesc Ximénez Llull", "1890-01-15", "Girona"),
    ("Vicenç Marcel·lí Horta", "1869-07-07", "Olot"),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("search-run")
    datagen.generate_run(folder, pages=30, seed=13, images=False)
    plant_persons(folder)
    (folder / "embargo.yaml").write_text("years: 100\ntoday: 2026-01-01\n", encoding="utf-8")
    return folder


def plant_persons(folder: Path) -> None:
    """Add page feedbeef00000000-p0 (with its image) whose first rows are the PLANTED persons."""
    template = load_template("padro-catala-1930")
    rng = random.Random(2)
    members = datagen.page_members(rng, datagen.Lexicons.load("ca"), template, 0)
    for member, (name, birth, place) in zip(members, PLANTED):
        member.values.update(name=name, birth_date=birth, birth_place=place)
    result = datagen.page_result("feedbeef00000000-p0", members, template, rng)
    datagen.render_page_image(result, folder / "images" / f"{result.page.page_id}.jpg")
    with store.connect(folder) as connection:
        store.write_page(connection, result, template)


@pytest.fixture(scope="module")
def searcher(run_dir: Path):
    opened = Searcher(run_dir)
    yield opened
    opened.close()


def test_phonetic_keys_merge_spelling_variants():
    assert phonetic("puig") == phonetic("puch")
    assert phonetic("bosch") == phonetic("bosc")
    assert phonetic("vila") == phonetic("bila")
    assert phonetic("marcel·li") == phonetic("marcelli") == phonetic("marceli")
    assert phonetic("ximenez") == phonetic("jimenez") == phonetic("gimenez")
    assert phonetic("horta") == phonetic("orta")
    assert phonetic("serra") == phonetic("sera")
    assert [t.key for t in name_tokens("Jph. Puch y Serra")] == [
        t.key for t in name_tokens("Josep Puig i Serra")
    ]
    assert [t.key for t in name_tokens("José")] == [t.key for t in name_tokens("Josep")]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("Josep Puig i Serra", "Josep Puig i Serra"),
        ("José Puch y Serra", "Josep Puig i Serra"),
        ("Jph. Serra Puig", "Josep Puig i Serra"),
        ("Jose Puig Sera", "Josep Puig i Serra"),
        ("Puig Serra, Josep", "Josep Puig i Serra"),
        ("Ma. Dolores Vila y Bosc", "Maria Dolors Vilà i Bosch"),
        ("Maria Dolors Bosch Vila", "Maria Dolors Vilà i Bosch"),
        ("Fco. Jiménez Lull", "Francesc Ximénez Llull"),
        ("Francisco Gimenez Ll.ull", "Francesc Ximénez Llull"),
        ("Vicente Marceŀlí Orta", "Vicenç Marcel·lí Horta"),
        ("Vicens Marcelli Horta", "Vicenç Marcel·lí Horta"),
    ],
)
def test_variants_find_the_person_first(searcher: Searcher, query: str, expected: str):
    hits = searcher.search(SearchQuery(text=query, limit=5))
    assert hits and hits[0].name == expected, [h.name for h in hits]


def test_birth_range_and_place_filter(searcher: Searcher):
    inside = searcher.search(SearchQuery(text="Josep Puig Serra", born=(1880, 1890), place="Vic"))
    assert inside and inside[0].name == "Josep Puig i Serra" and inside[0].birth_place == "Vic"
    assert all(h.birth_year is None or 1879 <= h.birth_year <= 1891 for h in inside)
    outside = searcher.search(SearchQuery(text="Josep Puig i Serra", born=(1900, 1910)))
    assert "Josep Puig i Serra" not in [h.name for h in outside if h.birth_year == 1885]
    elsewhere = searcher.search(SearchQuery(text="Josep Puig i Serra", place="Tarragona"))
    assert all(h.birth_place == "Tarragona" for h in elsewhere)


def test_hits_carry_page_row_confidence_and_a_crop(run_dir: Path):
    hits = search(run_dir, SearchQuery(text="Josep Puig i Serra", limit=1), crops=True)
    hit = hits[0]
    assert hit.page_id == "feedbeef00000000-p0" and hit.row == 0 and 0 < hit.confidence <= 1
    crop = Path(hit.crop)
    assert crop.is_file() and crop.parent == run_dir / "crops"
    from PIL import Image

    with Image.open(crop) as image:
        assert image.width > image.height > 20  # the name cell, not the page


def test_labelled_variant_queries_top5(run_dir: Path, searcher: Searcher):
    queries = labelled_queries(run_dir / store.STORE_NAME, count=60, seed=3)
    found = 0
    for query in queries:
        hits = searcher.search(
            SearchQuery(
                text=query.query, born=query.born, place=query.place, limit=5, include_restricted=True
            )
        )
        found += any(hit.person_id == query.person_id for hit in hits)
    assert found / len(queries) >= 0.95


def test_variant_generator_changes_the_spelling():
    rng = random.Random(0)
    for _ in range(50):
        text, rules = make_variant("Josep Puig i Serra", rng)
        assert rules and text != "Josep Puig i Serra"


def test_index_is_rebuilt_when_the_store_changes(run_dir: Path):
    template = load_template("padro-catala-1930")
    rng = random.Random(9)
    members = datagen.page_members(rng, datagen.Lexicons.load("ca"), template, 0)
    members[0].values.update(name="Quirze Xicola i Pladevall", birth_date="1870-02-02")
    with store.connect(run_dir) as connection:
        store.write_page(
            connection, datagen.page_result("0dd5ee0000000000-p0", members, template, rng), template
        )
    hits = search(run_dir, SearchQuery(text="Quirse Chicola Pladeval"), crops=False)
    assert hits and hits[0].name == "Quirze Xicola i Pladevall"


def test_parse_born():
    assert (
        parse_born("1880-1890") == (1880, 1890)
        and parse_born("1885") == (1885, 1885)
        and parse_born(None) is None
    )
    from pipeline.errors import UsageError

    with pytest.raises(UsageError):
        parse_born("eighteen-eighty")


def test_cli_search(run_dir: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "search",
            str(run_dir),
            "Jph. Puch y Serra",
            "--born",
            "1880-1890",
            "--json",
            "--limit",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert '"Josep Puig i Serra"' in done.stdout.splitlines()[0]
