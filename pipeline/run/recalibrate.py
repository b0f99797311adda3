"""A run's own calibration, fitted on its reviewed cells (`census recalibrate RUN_DIR`; `census review pull`
runs it after every pull).

The shipped calibration is fitted on a mixture of hands; on a register in a hand the recogniser was not
trained on, its confidences are too high (20 synthetic pages in Kristi, a held-out font: 18% of the
accepted cells wrong). The reviewers' answers are labels for exactly this register: a reviewed cell is
right when the reviewer kept the machine's reading (a confirmation), wrong when they changed it, emptied
it or found it illegible (its reading could not be confirmed).

0. The run's adapted model (`census adapt`) has learnt from the reviewed cells of its register, so the
   shipped calibration, fitted on the shipped model, says nothing about its confidences: on the held-out
   CREMMA 18th-century series it accepted 3 of the adapted model's 329 lines, 1 of them wrong, and 2 of 3
   wrong on the TIME US 1858 register. Until step 1 can fit on its own answered readings, none of them is
   accepted (threshold 1.0, applied): a reviewer sees each one, and those answers are what step 1 needs.
   Once fitted, its fit is applied whatever step 4 would say: the shipped routing is no alternative for a
   model it was never fitted on (on the TIME US 1858 register it would accept 3 of 3,896 lines, 2 wrong).
   And the fit accepts only once its held-out check (step 3) accepts `MIN_SUPPORTED` judged readings with
   at most `TARGET_ERROR` of them wrong: a fit on a hand it still misreads almost always has too few right
   readings to place a threshold by (TIME US 1878: 3 right of 204, and it accepted 6 lines, 1 wrong).
1. Fit: a logistic regression of right/wrong on the logit of the machine's confidence, the shipped
   calibration's, kept per cell in the store's `machine_confidence` (so a refit never compounds an
   earlier one), with `pipeline.htr.calibrate.fit_logistic`. Only with at least `MIN_REVIEWED` reviewed
   cells of which `MIN_ERRORS` are wrong; else the shipped calibration stays and calibration.json says how
   many more are needed.
2. Threshold: the fitted probability is honest per cell, but the promise is about the accepted cells as a
   whole: at most `TARGET_ERROR` of them wrong. The run's review threshold is the template's, raised to the
   lowest confidence at which the run's acceptable cells (no reason from the fields stage) above it are
   expected to be wrong at most `TARGET_ERROR` of the time (mean of 1 - p); when no level is, nothing is
   accepted. So a register starts conservative and its cells are accepted once its own reviewed cells show
   the recogniser reads it.
3. Held-out check: steps 1-2 cross-validated on the reviewed cells (`FOLDS` folds): the share of them that
   would be accepted and the share of those that are wrong; beside it the same for the shipped confidences
   at the template's thresholds.
4. Choice: the run's calibration is applied when, on the reviewed cells, the shipped confidences break the
   promise (by more than one standard error, and in `MIN_ERRORS` wrong cells at least: in a run of pages in
   many hands reviewed from its queue, 5 of 16 such cells were wrong, all on one page in Kristi that the page
   rule held, while the other pages' accepted cells were 0.68% wrong), or when the run's keep the promise
   and accept more of them. Otherwise the shipped calibration and routing stay: for a familiar hand, which
   the shipped calibration underrates; after a review of the queue alone, which says little about the
   confident cells; for pages in many hands, where one fit is too cautious for the good ones. Applied
   anyway, the fit would have cost those runs 1 to 82 points of acceptance (README, "What we measured").
5. Re-route: applied, every cell of the calibrated model that no reviewer answered gets the run's confidence
   and is routed again at the run's threshold, without the `unfamiliar-hand` page rule: that rule stands in
   for a calibration that does not know the hand, and the run's calibration does (with the fit applied, the
   accepted cells of the unreviewed pages were 0-0.67% wrong without the rule; keeping it cost 0-3 points of
   acceptance for 0-0.2 points less wrong). Not applied (any more), they get the shipped confidence and
   routing back.
   A reviewer's answer is never changed. Cells of other models (a page re-recognised by another model) keep
   theirs.

The fit and the threshold are written to RUN_DIR/calibration.json, with the counts they rest on. Running
it again on the same corrections gives the same store.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from pipeline.errors import UsageError
from pipeline.evaluation.reliability import accept_threshold
from pipeline.htr.calibrate import fit_logistic
from pipeline.htr.confidence import sigmoid
from pipeline.run import store
from pipeline.run.paths import write_atomically
from pipeline.stages.fieldtypes import is_illegible, is_quote_ditto
from pipeline.stages.route import ROUTE_REASONS, route, threshold_for
from pipeline.stages.templates import Template

CALIBRATION_NAME = "calibration.json"
TARGET_ERROR = 0.02  # the promise: at most 2% wrong among the accepted cells (`census calibrate`'s default)
# Enough reviewed cells to fit on: with 200 the share wrong at a 2% error rate is measured to within one
# standard error of 1.0% (sqrt(0.02 * 0.98 / 200)), and 20 wrong cells are 10 per fitted parameter (the
# usual events-per-variable rule for a stable logistic regression: 2 parameters).
MIN_REVIEWED = 200
MIN_ERRORS = 20
FOLDS = 5
LOGIT_CLIP = 1e-6  # a confidence of exactly 0 or 1 keeps a finite logit (so no confidence reaches 1.0)
UNJUDGED = "the run's adapted model, its readings not yet judged by reviewers: none accepted"
# The adapted model's fit is trusted to accept only once its held-out check (step 3) accepts this many of
# the judged readings, at most TARGET_ERROR of them wrong: on the held-out TIME US 1878 register (1.5% of
# lines read exactly) a fit on 204 judged lines with 3 right accepted 6 of the next 3,067 lines, 1 wrong.
MIN_SUPPORTED = 20
UNSUPPORTED = ("the run's adapted model, fitted on its judged readings, but too few of them right to accept "
               "any (held-out check): none accepted")
# SQL conditions on `cells c`: read by the machine with a model (parameters: engine, model); not answered.
OF_MODEL = ("c.machine_status IN ('accepted', 'needs_review') AND COALESCE(c.engine, '') = ? "
            "AND COALESCE(c.model, '') = ?")
UNANSWERED = "NOT EXISTS (SELECT 1 FROM corrections k WHERE k.cell_id = c.cell_id)"


class OnReviewed(BaseModel):
    """How one way of routing does on the run's reviewed cells."""

    reviewed: int
    accepted: int  # reviewed cells it accepts
    accepted_wrong: int
    accepted_share: float
    accepted_error: float

    def fails(self) -> bool:
        """Wrong more often than the promise allows, by more than one standard error, in `MIN_ERRORS` cells
        or more (fewer can all come from a page or two in another hand, which the page rule held back)."""
        error = self.accepted_error
        standard_error = float(np.sqrt(error * (1 - error) / max(self.accepted, 1)))
        return self.accepted_wrong >= MIN_ERRORS and error - standard_error > TARGET_ERROR

    @classmethod
    def of(cls, accepted: np.ndarray, right: np.ndarray) -> OnReviewed:
        taken, wrong = int(accepted.sum()), int((accepted & ~right).sum())
        return cls(reviewed=len(accepted), accepted=taken, accepted_wrong=wrong,
                   accepted_share=round(taken / len(accepted), 4) if len(accepted) else 0.0,
                   accepted_error=round(wrong / taken, 4) if taken else 0.0)


class RunCalibration(BaseModel):
    """RUN_DIR/calibration.json: the run's calibration of one model's confidences and what it rests on."""

    fitted: bool
    method: str = "platt on the logit of machine_confidence, fitted on the run's reviewed cells"
    engine: str
    model: str
    coef: float = 1.0  # run confidence = sigmoid(coef * logit(machine confidence) + intercept)
    intercept: float = 0.0
    review_threshold: float | None = None  # the run's threshold (key fields stricter, as routing does)
    reviewed: int  # cells of this model a reviewer answered (machine readings that were not illegible)
    errors: int  # of those, the machine's reading was not kept
    more_reviewed_needed: int
    more_errors_needed: int
    corrections: int  # provenance: the corrections in the store when fitted, and the latest one's time
    last_correction_at: str | None
    shipped: OnReviewed | None = None  # the shipped confidences at the template's thresholds
    held_out: OnReviewed | None = None  # this fit, cross-validated (FOLDS folds)
    applied: bool = False  # the run's confidences and routing are this calibration's (step 4)

    def confidence(self, machine: np.ndarray) -> np.ndarray:
        return sigmoid(self.coef * logit(machine) + self.intercept)


class Recalibration(BaseModel):
    calibration: RunCalibration
    path: str
    unreviewed_cells: int  # machine-read cells of the model that no reviewer answered
    accepted_before: float  # share of those accepted before and after
    accepted_after: float


def logit(confidence: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(confidence, np.float64), LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(clipped / (1 - clipped))


def same_reading(machine: str, reviewed: str) -> bool:
    """Whether the reviewer kept the machine's reading (a ditto drawn as strokes is one sign, any glyph)."""
    return machine.strip() == reviewed.strip() or (is_quote_ditto(machine) and is_quote_ditto(reviewed))


def recalibrate(run_dir: Path) -> Recalibration:
    """Fit the run's calibration on its reviewed cells, write calibration.json, re-route (see module doc)."""
    run_dir = Path(run_dir)
    if not (run_dir / store.STORE_NAME).is_file():
        raise UsageError(f"no store at {run_dir / store.STORE_NAME}: "
                         f"run `census run ... --out {run_dir}` first")
    with store.connect(run_dir) as connection:
        template = store.stored_template(connection)
        engine, model = main_model(connection)
        cells = machine_read(connection, engine, model)
        calibration = fit_run(cells, template, engine, model, provenance(connection),
                              adapted=is_adapted(connection, run_dir, model))
        before = accepted_share(connection, engine, model)
        if calibration.applied or recalibrated_before(connection, engine, model) or applied_before(run_dir):
            reroute(connection, calibration, template)
        summary = Recalibration(calibration=calibration, path=str(run_dir / CALIBRATION_NAME),
                                unreviewed_cells=int((~cells["answered"]).sum()), accepted_before=before,
                                accepted_after=accepted_share(connection, engine, model))
    write_atomically(run_dir / CALIBRATION_NAME, calibration.model_dump_json(indent=1).encode())
    print(progress_line(summary), file=sys.stderr)
    return summary


def progress_line(summary: Recalibration) -> str:
    calibration = summary.calibration
    if not calibration.fitted and calibration.applied:
        return (f"recalibrate: none of the adapted model's readings accepted until reviewers have answered "
                f"{MIN_REVIEWED} of them, {MIN_ERRORS} wrong: {calibration.reviewed} answered, "
                f"{calibration.errors} wrong")
    if not calibration.fitted:
        return (f"recalibrate: shipped calibration kept: {calibration.reviewed} reviewed cells, "
                f"{calibration.errors} wrong; {calibration.more_reviewed_needed} more reviewed and "
                f"{calibration.more_errors_needed} more wrong needed")
    shipped, held = calibration.shipped, calibration.held_out
    verdict = "applied" if calibration.applied else (
        "not applied: on the reviewed cells the shipped confidences do not break the promise in "
        f"{MIN_ERRORS} wrong cells or more, and this fit accepts no more within it")
    return (f"recalibrate: fitted on {calibration.reviewed} reviewed cells ({calibration.errors} wrong), "
            f"threshold {calibration.review_threshold:.3f}, {verdict}; on the reviewed cells the shipped "
            f"routing accepts {shipped.accepted_share:.1%}, {shipped.accepted_error:.2%} of them wrong, "
            f"this fit (held out) {held.accepted_share:.1%}, {held.accepted_error:.2%} wrong; "
            f"unreviewed cells accepted {summary.accepted_before:.1%} -> {summary.accepted_after:.1%}")


def main_model(connection: sqlite3.Connection) -> tuple[str, str]:
    """The (engine, model) that read most of the run's machine-read cells that no reviewer answered, the cells
    a calibration routes (after `census adapt`, its model; none unanswered: of all; none: empty names)."""
    row = connection.execute(
        f"SELECT COALESCE(c.engine, ''), COALESCE(c.model, '') FROM cells c WHERE c.machine_status IN "
        f"('accepted', 'needs_review') GROUP BY 1, 2 ORDER BY SUM({UNANSWERED}) DESC, COUNT(*) DESC, 1, 2 "
        f"LIMIT 1").fetchone()
    return (row[0], row[1]) if row else ("", "")


def machine_read(connection: sqlite3.Connection, engine: str, model: str) -> dict[str, np.ndarray]:
    """The model's machine-read cells (illegible readings excluded: routing sends them to review whatever
    their confidence), as arrays: confidence, whether answered, right (answered only), acceptable, field."""
    rows = connection.execute(
        f"SELECT c.cell_id, c.field, c.machine_text, COALESCE(c.machine_confidence, c.confidence), c.text, "
        f"c.status, c.reasons, NOT {UNANSWERED} FROM cells c WHERE {OF_MODEL} "
        f"ORDER BY c.cell_id", (engine, model)).fetchall()
    rows = [row for row in rows if not is_illegible(row[2])]
    return {
        "field": np.array([row[1] for row in rows], object),
        "machine": np.array([row[3] for row in rows], np.float64),
        "answered": np.array([bool(row[7]) for row in rows], bool),
        "right": np.array([row[5] == "corrected" and same_reading(row[2], row[4]) for row in rows], bool),
        "acceptable": np.array([not set(json.loads(row[6])) - ROUTE_REASONS for row in rows], bool)}


def provenance(connection: sqlite3.Connection) -> tuple[int, str | None]:
    count, latest = connection.execute("SELECT COUNT(*), MAX(corrected_at) FROM corrections").fetchone()
    return int(count), latest


def is_adapted(connection: sqlite3.Connection, run_dir: Path, model: str) -> bool:
    """Whether `model` (as the store's `model` column names it: the version, `+` its decoder) is the run's
    adapted model."""
    adapted = store.adapted_model(connection, run_dir)
    charset = adapted.with_suffix(".charset.json") if adapted else None
    return charset is not None and charset.is_file() and json.loads(
        charset.read_text(encoding="utf-8")).get("version") == model.split("+")[0]


def fit_run(cells: dict[str, np.ndarray], template: Template, engine: str, model: str,
            corrections: tuple[int, str | None], adapted: bool = False) -> RunCalibration:
    """Steps 1-4 of the module docstring; step 0 for the run's adapted model (`adapted`)."""
    answered = cells["answered"]
    reviewed, errors = int(answered.sum()), int((answered & ~cells["right"]).sum())
    counts = dict(engine=engine, model=model, reviewed=reviewed, errors=errors,
                  more_reviewed_needed=max(0, MIN_REVIEWED - reviewed),
                  more_errors_needed=max(0, MIN_ERRORS - errors),
                  corrections=corrections[0], last_correction_at=corrections[1])
    if reviewed < MIN_REVIEWED or errors < MIN_ERRORS:
        if adapted:  # step 0: nothing accepted yet
            return RunCalibration(fitted=False, method=UNJUDGED, review_threshold=1.0, applied=True, **counts)
        return RunCalibration(fitted=False, **counts)
    coef, intercept, threshold = fit_and_threshold(cells, answered, template)
    accepts = accepted_at(cells["machine"][answered], cells, answered, template)
    shipped = OnReviewed.of(accepts, cells["right"][answered])
    held = held_out(cells, template)
    if adapted and not supports_accepting(held):
        return RunCalibration(fitted=True, method=UNSUPPORTED, coef=coef, intercept=intercept,
                              review_threshold=1.0, shipped=shipped, held_out=held, applied=True, **counts)
    return RunCalibration(fitted=True, coef=coef, intercept=intercept, review_threshold=threshold,
                          shipped=shipped, held_out=held, applied=adapted or better(held, shipped), **counts)


def supports_accepting(held: OnReviewed) -> bool:
    """Whether the held-out check shows the fit's acceptance on enough judged readings to trust it (step 0)."""
    return held.accepted >= MIN_SUPPORTED and held.accepted_error <= TARGET_ERROR


def better(run: OnReviewed, shipped: OnReviewed) -> bool:
    """Step 4: the run's calibration when, on the reviewed cells, the shipped confidences break the promise,
    or the run's (held out) keep it and accept more."""
    keeps = run.accepted_error <= TARGET_ERROR
    return shipped.fails() or (keeps and run.accepted_share > shipped.accepted_share)


def accepted_at(confidence: np.ndarray, cells: dict[str, np.ndarray], which: np.ndarray,
                template: Template) -> np.ndarray:
    """Which of the cells `which` selects routing accepts at these confidences and the template's thresholds
    (page rule aside)."""
    needed = np.array([threshold_for(template, field) for field in cells["field"][which]])
    return (confidence >= needed) & cells["acceptable"][which]


def fit_and_threshold(cells: dict[str, np.ndarray], fit_on: np.ndarray,
                      template: Template) -> tuple[float, float, float]:
    """The logistic fit on the `fit_on` cells and the run's threshold (step 2) over all acceptable cells."""
    weights, intercept = fit_logistic(logit(cells["machine"][fit_on])[:, None], cells["right"][fit_on])
    coef = float(weights[0])
    expected = sigmoid(coef * logit(cells["machine"][cells["acceptable"]]) + intercept)
    lowest, _, _ = accept_threshold(expected, expected, TARGET_ERROR)
    return coef, intercept, 1.0 if lowest is None else max(template.review_threshold, lowest)


def held_out(cells: dict[str, np.ndarray], template: Template) -> OnReviewed:
    """Step 3: each reviewed cell judged by the fit and threshold made without its fold (folds by cell id)."""
    reviewed = np.flatnonzero(cells["answered"])
    fold_of = np.arange(len(reviewed)) % FOLDS
    accepted = np.zeros(len(reviewed), bool)
    for fold in range(FOLDS):
        train, test = np.zeros(len(cells["machine"]), bool), reviewed[fold_of == fold]
        train[reviewed[fold_of != fold]] = True
        coef, intercept, threshold = fit_and_threshold(cells, train, template)
        confidence = sigmoid(coef * logit(cells["machine"][test]) + intercept)
        accepted[fold_of == fold] = accepted_at(confidence, cells, test,
                                                template.model_copy(update={"review_threshold": threshold}))
    return OnReviewed.of(accepted, cells["right"][reviewed])


def accepted_share(connection: sqlite3.Connection, engine: str, model: str) -> float:
    """Share accepted among the model's machine-read cells no reviewer answered."""
    taken, total = connection.execute(
        f"SELECT SUM(c.status = 'accepted'), COUNT(*) FROM cells c WHERE {OF_MODEL} AND {UNANSWERED}",
        (engine, model)).fetchone()
    return round((taken or 0) / total, 4) if total else 0.0


def applied_before(run_dir: Path) -> bool:
    """Whether the run's routing was its calibration's until now (step 0's keeps the confidences as they are)."""
    path = run_dir / CALIBRATION_NAME
    return path.is_file() and RunCalibration.model_validate_json(path.read_text(encoding="utf-8")).applied


def recalibrated_before(connection: sqlite3.Connection, engine: str, model: str) -> bool:
    """Whether an earlier recalibration's confidences are in the store (undone when no longer applied)."""
    return connection.execute(
        f"SELECT 1 FROM cells c WHERE {OF_MODEL} AND {UNANSWERED} AND c.confidence != c.machine_confidence "
        f"LIMIT 1", (engine, model)).fetchone() is not None


def reroute(connection: sqlite3.Connection, calibration: RunCalibration, template: Template) -> None:
    """Step 5: the run's confidence and routing (not applied: the shipped ones) for every cell of the model
    that no reviewer answered."""
    threshold = calibration.review_threshold if calibration.applied else template.review_threshold
    run_template = template.model_copy(update={"review_threshold": threshold})
    pages = connection.execute("SELECT page_id FROM pages WHERE status = 'done' ORDER BY 1").fetchall()
    for (page_id,) in pages:
        machine = dict(connection.execute(
            f"SELECT c.cell_id, COALESCE(c.machine_confidence, c.confidence) FROM cells c "
            f"WHERE c.page_id = ? AND {OF_MODEL} AND {UNANSWERED}",
            (page_id, calibration.engine, calibration.model)).fetchall())
        if not machine:
            continue
        if calibration.applied:
            machine = {cell_id: float(calibration.confidence(value)) for cell_id, value in machine.items()}
        cells = [cell.model_copy(update={"confidence": machine[cell.cell_id]})
                 if cell.cell_id in machine else cell for cell in store.page_cells(connection, page_id)]
        with connection:
            connection.executemany(
                "UPDATE cells SET confidence = ?, status = ?, reasons = ? WHERE cell_id = ?",
                [(cell.confidence, cell.status, json.dumps(cell.reasons, ensure_ascii=False), cell.cell_id)
                 for cell in route(cells, run_template, hand_rule=not calibration.applied)
                 if cell.cell_id in machine])
            store.refresh_row_stats(connection, page_id)
