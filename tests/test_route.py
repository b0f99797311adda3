"""Routing stage: accept / needs_review / empty decisions and their reasons."""

from __future__ import annotations

import re

import pytest

from pipeline.stages.fields import interpret
from pipeline.stages.fieldtypes import Reason
from pipeline.models import BBox, Cell
from pipeline.stages.route import REASONS, threshold_for, route
from pipeline.stages.templates import load_template

CATALAN = load_template("padro-catala-1930")  # review_threshold 0.9; name, relation, age are key fields
KEYS = [column.key for column in CATALAN.columns]


def make_cell(key: str | None, text: str, confidence: float = 0.99, status: str | None = None,
              reasons: list[str] | None = None, row: int = 0) -> Cell:
    col = KEYS.index(key) if key in KEYS else len(KEYS)
    return Cell(cell_id=f"p-p0:r{row}:c{col}", page_id="p-p0", row=row, col=col, field=key, text=text,
                confidence=confidence, status=status or ("needs_review" if text.strip() else "empty"),
                reasons=reasons or [], bbox=BBox(x0=0, y0=0, x1=10, y1=10))


def routed(cell: Cell) -> Cell:
    return route([cell], CATALAN)[0]


def test_confident_valid_cell_is_accepted() -> None:
    cell = routed(make_cell("occupation", "jornaler", 0.97))
    assert (cell.status, cell.reasons) == ("accepted", [])


def test_blank_crop_stays_empty() -> None:
    cell = routed(make_cell("occupation", "", 1.0, status="empty"))
    assert (cell.status, cell.reasons) == ("empty", [])


@pytest.mark.parametrize("text", ["", "   ", "???", "¿?", "..."])
def test_illegible_reading_of_a_written_cell_goes_to_review(text: str) -> None:
    cell = routed(make_cell("birth_place", text, 0.95, status="needs_review"))
    assert cell.status == "needs_review"
    assert Reason.ILLEGIBLE in cell.reasons


def test_ditto_mark_is_not_illegible() -> None:
    assert routed(make_cell("birth_place", "〃", 0.95)).status == "accepted"


def test_low_confidence_goes_to_review() -> None:
    cell = routed(make_cell("occupation", "jornaler", 0.6))
    assert (cell.status, cell.reasons) == ("needs_review", [Reason.LOW_CONFIDENCE])


def test_key_fields_need_a_higher_confidence() -> None:
    assert threshold_for(CATALAN, "occupation") == pytest.approx(0.9)
    assert threshold_for(CATALAN, "name") == pytest.approx(0.95)
    assert threshold_for(CATALAN, None) == pytest.approx(0.9)
    assert routed(make_cell("occupation", "jornaler", 0.93)).status == "accepted"
    assert routed(make_cell("name", "Josep Puig", 0.93)).reasons == [Reason.LOW_CONFIDENCE]
    assert routed(make_cell("name", "Josep Puig", 0.96)).status == "accepted"


def test_validation_reason_sends_a_confident_cell_to_review() -> None:
    cell = routed(make_cell("age", "2O0", 0.99, reasons=[Reason.INVALID_AGE]))
    assert (cell.status, cell.reasons) == ("needs_review", [Reason.INVALID_AGE])


def test_reasons_accumulate_without_duplicates_and_routing_is_idempotent() -> None:
    once = route([make_cell("age", "2O0", 0.5, reasons=[Reason.INVALID_AGE])], CATALAN)
    twice = route(once, CATALAN)
    assert once == twice
    assert once[0].reasons == [Reason.INVALID_AGE, Reason.LOW_CONFIDENCE]


def test_corrected_cell_is_left_alone() -> None:
    cell = make_cell("name", "Josep Puig", 0.2, status="corrected")
    assert routed(cell) == cell


def test_input_cells_are_not_modified() -> None:
    cell = make_cell("occupation", "jornaler", 0.5)
    route([cell], CATALAN)
    assert (cell.status, cell.reasons) == ("needs_review", [])


def test_fields_then_route_on_a_page() -> None:
    rows = [
        {"name": ("Josep Puig i Serra", 0.98), "relation": ("cap", 0.99), "age": ("40", 0.97),
         "birth_date": ("12-3-1890", 0.95), "occupation": ("jornaler", 0.92),
         "address": ("C/ Major, 12", 0.91)},
        {"name": ("Maria Vila", 0.99), "relation": ("muller", 0.99), "age": ("38", 0.99),
         "birth_date": ("12-3-1850", 0.99), "occupation": ("???", 0.3), "address": ('"', 0.99)},
    ]
    cells = [make_cell(key, text, confidence, row=index) for index, row in enumerate(rows)
             for key, (text, confidence) in row.items()]
    cells.append(make_cell("sex", "", 1.0, status="empty", row=1))
    interpreted, persons = interpret(cells, CATALAN)
    final = {(cell.row, cell.field): cell for cell in route(interpreted, CATALAN)}
    assert all(final[(0, key)].status == "accepted" for key in rows[0])
    assert final[(1, "age")].reasons == [Reason.AGE_BIRTH_MISMATCH]
    assert final[(1, "birth_date")].reasons == [Reason.AGE_BIRTH_MISMATCH]
    assert final[(1, "occupation")].reasons == [Reason.ILLEGIBLE, Reason.LOW_CONFIDENCE]
    assert (final[(1, "address")].status, final[(1, "address")].value) == ("accepted", "carrer Major, 12")
    assert final[(1, "sex")].status == "empty"
    assert len(persons) == 2


def test_every_reason_is_documented_and_kebab_case() -> None:
    assert set(REASONS) == {reason.value for reason in Reason}
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", reason) for reason in REASONS)
    assert all(description for description in REASONS.values())


def page_of(confident: int, doubtful: int, empty: int = 0) -> list[Cell]:
    """One page's occupation cells: `confident` read at 0.97, `doubtful` at 0.5, `empty` blank crops."""
    confidences = [0.97] * confident + [0.5] * doubtful
    cells = [make_cell("occupation", "jornaler", confidence, row=row) for row, confidence in enumerate(confidences)]
    return cells + [make_cell("occupation", "", 1.0, status="empty", row=len(cells) + i) for i in range(empty)]


def test_a_page_in_a_hand_the_recogniser_does_not_know_goes_to_review_whole() -> None:
    cells = route(page_of(confident=5, doubtful=25, empty=40), CATALAN)  # 5 of 30 read cells accepted: < 30%
    assert [cell.reasons for cell in cells[:5]] == [[Reason.UNFAMILIAR_HAND]] * 5
    assert all(cell.status == "needs_review" for cell in cells[:30])
    assert all(cell.reasons == [Reason.LOW_CONFIDENCE] for cell in cells[5:30])  # their own reason, nothing added
    assert all(cell.status == "empty" for cell in cells[30:])  # blank crops say nothing about the hand
    assert route(cells, CATALAN) == cells  # idempotent


@pytest.mark.parametrize(("confident", "doubtful"), [(9, 21), (3, 16)])
def test_a_familiar_hand_or_a_page_too_small_to_judge_keeps_its_accepted_cells(confident: int, doubtful: int) -> None:
    cells = route(page_of(confident, doubtful), CATALAN)  # 30% accepted; or 19 read cells, too few to judge
    assert [cell.status for cell in cells[:confident]] == ["accepted"] * confident


def test_corrected_cells_do_not_count_towards_the_hand() -> None:
    corrected = [make_cell("occupation", "jornaler", 0.3, status="corrected", row=100 + i) for i in range(40)]
    cells = route(page_of(confident=10, doubtful=15) + corrected, CATALAN)
    assert [cell.status for cell in cells[:10]] == ["accepted"] * 10


def test_routing_again_recomputes_its_own_reasons_and_keeps_the_fields_stage_ones() -> None:
    doubtful = route([make_cell("occupation", "jornaler", 0.5),
                      make_cell("age", "2O0", 0.5, reasons=[Reason.INVALID_AGE])], CATALAN)
    surer = route([cell.model_copy(update={"confidence": 0.97}) for cell in doubtful], CATALAN)
    assert [(cell.status, cell.reasons) for cell in surer] == [("accepted", []), ("needs_review", [Reason.INVALID_AGE])]
    assert route(surer, CATALAN) == surer


def test_a_page_sent_whole_to_review_is_released_when_its_confidences_rise() -> None:
    whole = route(page_of(confident=5, doubtful=25), CATALAN)
    assert all(cell.status == "needs_review" for cell in whole)
    risen = route([cell.model_copy(update={"confidence": 0.97}) if index < 10 else cell
                   for index, cell in enumerate(whole)], CATALAN)  # 10 of 30 read cells confident: 33%
    assert [(cell.status, cell.reasons) for cell in risen[:10]] == [("accepted", [])] * 10
    assert all(cell.reasons == [Reason.LOW_CONFIDENCE] for cell in risen[10:])
    assert route(risen, CATALAN) == risen


def test_a_cell_a_reviewer_found_illegible_is_left_alone() -> None:
    cell = make_cell("occupation", "", 0.3, status="illegible")
    assert routed(cell) == cell


def test_confidences_of_the_run_own_calibration_are_routed_without_the_page_rule() -> None:
    cells = route(page_of(confident=5, doubtful=25), CATALAN, hand_rule=False)
    assert [(cell.status, cell.reasons) for cell in cells[:5]] == [("accepted", [])] * 5
