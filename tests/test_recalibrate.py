"""A run's own calibration from its reviewed cells (pipeline.run.recalibrate, `census recalibrate`): enough
reviewed cells or the shipped calibration stays, a logistic fit on the machine's confidence that never
compounds, the run's threshold, re-routing of the cells no reviewer answered and never of the others."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.htr.confidence import sigmoid
from pipeline.models import BBox, Cell, PageInfo, PageResult
from pipeline.run import store
from pipeline.run.recalibrate import MIN_ERRORS, MIN_REVIEWED, TARGET_ERROR, OnReviewed, logit, recalibrate
from pipeline.stages.fieldtypes import Reason
from pipeline.stages.route import route
from pipeline.stages.templates import load_template
from review.pull import Correction, apply_batch

TEMPLATE = load_template("padro-catala-1930")  # review threshold 0.9; occupation is not a key field
CELLS_PER_PAGE = 60
# The shipped calibration's confidences of a page's cells: on a page of the first kind over 30% clear the
# threshold; on one of the second, fewer: routing holds its accepted cells back too ('unfamiliar-hand').
HIGH = np.linspace(0.75, 0.99, CELLS_PER_PAGE)
SPREAD = np.linspace(0.3, 0.99, CELLS_PER_PAGE)
REPO = Path(__file__).resolve().parents[1]


def page_of(index: int, machine: np.ndarray) -> PageResult:
    """One page of occupation cells read 'jornaler' at these confidences, routed as a run routes them."""
    page_id = f"page{index}-p0"
    cells = [Cell(cell_id=f"{page_id}:r{row}:c9", page_id=page_id, row=row, col=9, field="occupation",
                  text="jornaler", confidence=float(confidence), status="needs_review",
                  bbox=BBox(x0=0, y0=row * 40, x1=200, y1=row * 40 + 35), engine="crnn", model="m1")
             for row, confidence in enumerate(machine)]
    info = PageInfo(page_id=page_id, source=f"/scans/page{index}.png", page_index=0, width=200, height=2400)
    return PageResult(page=info, template=TEMPLATE.name, cells=route(cells, TEMPLATE))


def make_run(run_dir: Path, pages: int, reviewed_pages: int, machine: np.ndarray, accuracy,
             seed: int = 0) -> None:
    """A run of `pages` pages; every cell of the first `reviewed_pages` answered by a reviewer, right with
    probability `accuracy(machine confidence)` (kept as read) and otherwise corrected."""
    run_dir.mkdir(exist_ok=True)
    with store.connect(run_dir) as connection:
        store.create(connection, TEMPLATE)
        for index in range(pages):
            store.write_page(connection, page_of(index, machine), TEMPLATE)
    answer(run_dir, range(reviewed_pages), machine, accuracy, seed)


def answer(run_dir: Path, pages, machine: np.ndarray, accuracy, seed: int = 0) -> None:
    """A reviewer answers every cell of these pages (see `make_run`)."""
    rng = np.random.default_rng(seed)
    answers = [Correction(cell_id=f"page{index}-p0:r{row}:c9",
                          new_value="jornaler" if rng.random() < accuracy(confidence) else "pagès",
                          new_status="corrected", reviewer="anna", corrected_at="2026-12-06T10:00:00",
                          annotation_id=f"a{index}-{row}")
               for index in pages for row, confidence in enumerate(machine)]
    with store.connect(run_dir) as connection:
        apply_batch(connection, answers, TEMPLATE)


def cells_of(run_dir: Path, sql: str = "") -> list[tuple]:
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        return connection.execute(f"SELECT cell_id, text, confidence, machine_confidence, status, reasons "
                                  f"FROM cells {sql} ORDER BY cell_id").fetchall()


def overconfident(confidence: float) -> float:
    return confidence - 0.3  # the hand is read far worse than the shipped calibration says


def underconfident(confidence: float) -> float:
    return float(sigmoid(2 * logit(confidence) + 1))  # a hand read better than it says: Platt's own family


def familiar(confidence: float) -> float:
    return 1.0 if confidence >= 0.9 else 0.75  # right above the threshold: shipped routing keeps its promise


def test_too_few_reviewed_cells_keep_the_shipped_calibration_and_say_how_many_more(tmp_path: Path) -> None:
    make_run(tmp_path, pages=4, reviewed_pages=2, machine=HIGH, accuracy=overconfident)
    before = cells_of(tmp_path)
    summary = recalibrate(tmp_path)
    calibration = summary.calibration
    assert not calibration.fitted
    assert calibration.reviewed == 2 * CELLS_PER_PAGE
    assert calibration.more_reviewed_needed == MIN_REVIEWED - 2 * CELLS_PER_PAGE
    assert calibration.more_errors_needed == max(0, MIN_ERRORS - calibration.errors)
    assert json.loads((tmp_path / "calibration.json").read_text()) == calibration.model_dump()
    assert cells_of(tmp_path) == before


def test_the_runs_adapted_model_accepts_nothing_until_its_own_readings_are_judged(tmp_path: Path) -> None:
    make_run(tmp_path, pages=7, reviewed_pages=0, machine=HIGH, accuracy=familiar)
    shipped_routing = cells_of(tmp_path)
    assert any(status == "accepted" for *_, status, _ in shipped_routing)
    model = tmp_path / "models" / "adapted-1" / "crnn.onnx"  # `census adapt` names the cells' model m1 its own
    model.parent.mkdir(parents=True)
    model.with_suffix(".charset.json").write_text(json.dumps({"version": "m1"}))
    with store.connect(tmp_path) as connection, connection:
        connection.execute("INSERT INTO meta VALUES (?, ?)", (store.ADAPTED_MODEL_KEY, "models/adapted-1/crnn.onnx"))

    unjudged = recalibrate(tmp_path).calibration
    assert unjudged.applied and not unjudged.fitted and unjudged.review_threshold == 1.0
    assert {status for *_, status, _ in cells_of(tmp_path)} == {"needs_review"}

    answer(tmp_path, range(5), HIGH, familiar)  # its readings judged: its own fit routes it from now on
    judged = recalibrate(tmp_path).calibration
    assert judged.fitted and judged.applied
    assert any(status == "accepted" for *_, status, _ in cells_of(tmp_path, "WHERE cell_id >= 'page5'"))

    with store.connect(tmp_path) as connection, connection:  # `census adapt --reset`: the shipped model again
        connection.execute("DELETE FROM meta WHERE key = ?", (store.ADAPTED_MODEL_KEY,))
    assert not recalibrate(tmp_path).calibration.applied  # a familiar hand: the shipped routing keeps its promise
    assert cells_of(tmp_path, "WHERE cell_id >= 'page5'") == [
        cell for cell in shipped_routing if cell[0] >= "page5"]  # the shipped routing back


def test_a_register_read_worse_than_the_shipped_calibration_says_loses_accepted_cells(tmp_path: Path) -> None:
    make_run(tmp_path, pages=6, reviewed_pages=4, machine=HIGH, accuracy=overconfident)
    reviewed_before = cells_of(tmp_path, "WHERE cell_id < 'page4'")
    unreviewed = cells_of(tmp_path, "WHERE cell_id >= 'page4'")
    assert sum(status == "accepted" for *_, status, _ in unreviewed) > 0
    summary = recalibrate(tmp_path)
    calibration = summary.calibration
    assert calibration.fitted and calibration.reviewed == 4 * CELLS_PER_PAGE
    assert calibration.errors >= MIN_ERRORS
    assert calibration.confidence(np.array([0.99]))[0] < 0.9  # right 69% of the time at 0.99
    assert calibration.review_threshold == 1.0  # no level is right 98% of the time: nothing accepted
    assert summary.accepted_before > 0 and summary.accepted_after == 0.0
    assert calibration.held_out.accepted == 0
    after = cells_of(tmp_path, "WHERE cell_id >= 'page4'")
    assert [row[3] for row in after] == [row[3] for row in unreviewed]  # machine confidence kept
    assert all(status == "needs_review" and json.loads(reasons) == [Reason.LOW_CONFIDENCE]
               for *_, status, reasons in after)
    assert cells_of(tmp_path, "WHERE cell_id < 'page4'") == reviewed_before  # no reviewer's answer touched


def test_a_register_read_better_than_it_says_gets_more_accepted_its_pages_released(tmp_path: Path) -> None:
    make_run(tmp_path, pages=7, reviewed_pages=5, machine=SPREAD, accuracy=underconfident)
    unreviewed = cells_of(tmp_path, "WHERE cell_id >= 'page5'")
    assert all(status == "needs_review" for *_, status, _ in unreviewed)  # < 30% accepted: held whole
    assert any(json.loads(reasons) == [Reason.UNFAMILIAR_HAND] for *_, reasons in unreviewed)
    summary = recalibrate(tmp_path)
    calibration = summary.calibration
    assert calibration.fitted
    assert calibration.coef == pytest.approx(2, abs=0.6)
    assert calibration.intercept == pytest.approx(1, abs=0.6)
    after = {cell_id: (confidence, status, json.loads(reasons))
             for cell_id, _, confidence, _, status, reasons in cells_of(tmp_path, "WHERE cell_id >= 'page5'")}
    assert all(Reason.UNFAMILIAR_HAND not in reasons for _, _, reasons in after.values())
    accepted = [confidence for confidence, status, _ in after.values() if status == "accepted"]
    assert len(accepted) > 2 * sum(SPREAD >= 0.9)  # before, those cleared 0.9 and the page rule held them
    assert min(accepted) >= calibration.review_threshold >= TEMPLATE.review_threshold
    assert np.mean([1 - confidence for confidence in accepted]) <= TARGET_ERROR
    held = calibration.held_out
    assert held.reviewed == 5 * CELLS_PER_PAGE and held.accepted > 0 and held.accepted_error <= 0.05


def test_where_the_shipped_routing_keeps_its_promise_and_accepts_more_it_stays(tmp_path: Path) -> None:
    make_run(tmp_path, pages=7, reviewed_pages=5, machine=HIGH, accuracy=familiar)
    shipped = cells_of(tmp_path)
    summary = recalibrate(tmp_path)
    calibration = summary.calibration
    assert calibration.fitted and not calibration.applied
    assert calibration.shipped.accepted_error == 0.0
    assert calibration.shipped.accepted_share == pytest.approx(np.mean(HIGH >= 0.9), abs=0.01)
    assert calibration.held_out.accepted_share < calibration.shipped.accepted_share
    assert cells_of(tmp_path) == shipped
    # the unreviewed cells as an earlier, applied recalibration would have left them
    with sqlite3.connect(tmp_path / store.STORE_NAME) as connection:
        connection.execute("UPDATE cells SET confidence = 0.5, status = 'needs_review', "
                           "reasons = '[\"low-confidence\"]' WHERE cell_id >= 'page5'")
    recalibrate(tmp_path)
    assert cells_of(tmp_path) == shipped  # the shipped confidences and routing back


def test_recalibrating_again_changes_nothing_refits_do_not_compound(tmp_path: Path) -> None:
    make_run(tmp_path, pages=7, reviewed_pages=5, machine=SPREAD, accuracy=underconfident)
    first = recalibrate(tmp_path)
    once = cells_of(tmp_path)
    second = recalibrate(tmp_path)
    assert cells_of(tmp_path) == once
    assert second.calibration == first.calibration
    assert second.accepted_before == second.accepted_after == first.accepted_after


def test_census_recalibrate_command_prints_the_summary_and_refuses_a_missing_run(tmp_path: Path) -> None:
    make_run(tmp_path / "run", pages=7, reviewed_pages=5, machine=SPREAD, accuracy=underconfident)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "recalibrate", str(tmp_path / "run"),
                           "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["calibration"]["fitted"] is True
    assert "recalibrate: fitted on 300 reviewed cells" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "pipeline.cli", "recalibrate", str(tmp_path / "none")],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no store" in missing.stderr


@pytest.mark.parametrize(("accepted", "wrong", "fails"), [(16, 5, False), (160, 26, True), (1000, 24, False),
                                                         (1000, 40, True)])
def test_the_shipped_confidences_break_the_promise_only_on_enough_evidence(accepted: int, wrong: int,
                                                                           fails: bool) -> None:
    # 5 of 16: too few wrong cells (one page in another hand); 24 of 1000: 2.4%, within a standard error of 2%
    taken = np.arange(2000) < accepted
    right = ~(np.arange(2000) < wrong)
    assert OnReviewed.of(taken, right).fails() is fails
