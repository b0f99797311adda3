"""Household reconstruction on synthetic pages with known households (written like the page
generator writes them, read back by the fields stage), clean and with recognition slips."""

from __future__ import annotations

import numpy as np

from pipeline.dataset.bench import bench_households, household_accuracy, misread, synthetic_household_page
from pipeline.dataset.households import assign_households
from pipeline.models import Person
from pipeline.stages.templates import load_template

TEMPLATE = load_template("padro-catala-1930")


def _person(row: int, relation: str | None, address: str | None) -> Person:
    return Person(page_id="p", row=row, values={"relation": relation, "address": address}, cell_ids={})


def _ids(persons: list[Person]) -> list[str]:
    return [p.household_id for p in assign_households(persons, TEMPLATE, "page7")]


def test_heads_and_new_addresses_start_households():
    persons = [
        _person(0, "son", "carrer Major, 3"),  # continues the previous page's household
        _person(1, "head", "carrer Major, 5"),
        _person(2, "spouse", "carrer Major, 5"),
        _person(3, "daughter", None),  # blank address: same dwelling
        _person(4, None, "carrer Nou, 12"),
        _person(5, "spouse", "carrer Nou, 12"),  # head unread
        _person(6, "head", "carrer Nou, 12"),
    ]  # same building, another family
    assert _ids(persons) == [
        "page7:h0",
        "page7:h1",
        "page7:h1",
        "page7:h1",
        "page7:h2",
        "page7:h2",
        "page7:h3",
    ]


def test_a_single_misread_address_does_not_split_a_household():
    persons = [
        _person(0, "head", "carrer de Dalt, 104"),
        _person(1, "son", "carrer de Dalt, 10e"),
        _person(2, "daughter", "carrer de Dalt, 104"),
        _person(3, None, "carer de Dalt, 104"),
    ]
    assert len(set(_ids(persons))) == 1


def test_neighbouring_house_numbers_are_different_households():
    persons = [
        _person(0, "head", "carrer Major, 12"),
        _person(1, None, "carrer Major, 14"),
        _person(2, "spouse", "carrer Major, 14"),
    ]
    assert _ids(persons) == ["page7:h0", "page7:h1", "page7:h1"]


def test_ids_are_unique_per_page():
    persons = [_person(0, "head", "a, 1"), _person(1, "head", "b, 2")]
    first = set(_ids(persons))
    second = {p.household_id for p in assign_households(persons, TEMPLATE, "page8")}
    assert not first & second


def test_accuracy_metric():
    assert household_accuracy(["a", "a", "b"], ["x", "x", "y"]) == 1.0
    assert household_accuracy(["a", "a", "a"], ["x", "x", "y"]) == 0.0
    assert household_accuracy(["a", "a", "b", "c"], ["x", "x", "y", "y"]) == 0.5


def test_synthetic_pages_reach_the_bar():
    figures = bench_households(pages=25, seed=4)
    assert figures["household_persons"] == 25 * 30
    assert figures["household_accuracy"] >= 0.98


def test_synthetic_pages_with_recognition_slips():
    figures = bench_households(pages=25, seed=5, noise=0.05)
    assert figures["household_accuracy_noise5"] >= 0.97


def test_synthetic_page_values_come_from_the_fields_stage():
    persons, truth = synthetic_household_page(9, TEMPLATE)
    assert len(persons) == len(truth) == 30
    assert persons[0].values["relation"] in {
        "head",
        "son",
        "daughter",
        "spouse",
        "servant",
        "lodger",
        "mother",
        "father",
        "grandson",
        "granddaughter",
        "nephew",
        "niece",
    }
    noisy = misread(persons, 1.0, np.random.default_rng(0))
    assert all(p.values["relation"] is None for p in noisy)
