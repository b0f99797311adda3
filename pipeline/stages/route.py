"""Routing stage: decide for each cell whether its value is accepted as read or goes to a
reviewer (Label Studio), and record why.

Rules, in order:
- a cell a reviewer already answered keeps its status ('corrected', 'illegible');
- a blank crop (provisional status 'empty', no text) stays 'empty';
- otherwise it goes to 'needs_review' when any of these holds, each adding its reason:
  the reading is illegible (empty text from a non-blank crop, or only marks like '???');
  its confidence is under the threshold; the fields stage recorded a validation or
  consistency reason. Else it is 'accepted'.
- then, per page: when fewer than 30% of the page's machine-read cells are accepted (and it has at
  least 20), the recogniser reads the hand poorly, and there its confident readings are wrong far more
  often than their confidence says; the page's accepted cells go to review too ('unfamiliar-hand'),
  unless the confidences are the run's own calibration (`hand_rule=False`).

Thresholds: confidences are calibrated probabilities that the text is exactly right, so
`1 - threshold` is the error rate tolerated among accepted cells. Key fields (names,
relation, age: `ColumnSpec.key_field`) tolerate half of it: with the templates' 0.9 a key
field needs 0.95. Routing is idempotent: routing twice gives the same cells. It recomputes its own
reasons (`ROUTE_REASONS`) on every run and keeps the fields stage's, so routing again after the
confidences changed (a run's own calibration, `pipeline.run.recalibrate`) releases a cell, or a whole page,
that no longer needs review.
"""

from __future__ import annotations

from pipeline.stages.fieldtypes import Reason, is_illegible
from pipeline.models import Cell
from pipeline.stages.templates import Template

# Share of the template's tolerated error rate (1 - review_threshold) allowed on key fields.
KEY_FIELD_ERROR_SHARE = 0.5
# A page whose machine-read cells are accepted less often than this is in a hand the recogniser reads
# poorly, and there its confident readings are often wrong: on 11 of 60 synthetic validation pages (seeds
# 4545 and 4646, 7 in held-out fonts), 8.5% of the accepted cells (0-16% a page), against 1.3% over all.
# Chosen on those pages: wrong among the accepted cells 1.30% -> 0.80%, accepted 60.0% -> 56.1% (the model
# card has the test figures).
FAMILIAR_HAND_SHARE = 0.3
MIN_CELLS_TO_JUDGE_HAND = 20  # a page with fewer machine-read cells says too little about its hand

# Every reason a cell can carry, with the explanation reviewers and reports show.
REASONS: dict[str, str] = {
    Reason.LOW_CONFIDENCE.value: "the recogniser's confidence is under the review threshold",
    Reason.ILLEGIBLE.value: "ink in the cell but nothing readable was recognised",
    Reason.UNKNOWN_VOCABULARY.value: "not one of the column's known values (relation, sex...)",
    Reason.VOCABULARY_UNCERTAIN.value: "taken as the closest known value, but the reading is far from it",
    Reason.INVALID_AGE.value: "not an age between 0 and 110 years (months and days give 0)",
    Reason.INVALID_DATE.value: "not a valid date, or a date after the register or over 110 years before it",
    Reason.DATE_CENTURY_GUESSED.value: "two-digit year and no register year: the 1900s were assumed",
    Reason.INVALID_NUMBER.value: "not a whole number",
    Reason.LEXICON_UNCERTAIN.value: "near, not clearly, a known place/occupation/street: likely misread",
    Reason.DITTO_WITHOUT_VALUE.value: "ditto mark with no value above it (first row, blank above)",
    Reason.DITTO_NOT_ALLOWED.value: "ditto mark in a column where the template does not allow one",
    Reason.AGE_BIRTH_MISMATCH.value: "age differs by more than a year from register year minus birth year",
    Reason.CHILD_OLDER_THAN_PARENT.value: "a son or daughter not younger than the head or the head's spouse",
    Reason.HEAD_NOT_FIRST.value: "a new household (new address) whose first person is not its head",
    Reason.NO_LETTERS.value: "no letters where a name, place, occupation or street goes (a misread ditto?)",
    Reason.SEX_MISMATCH.value: "not the sex the given name or the relation (son, mother...) implies",
    Reason.UNFAMILIAR_HAND.value: "few cells of this page were read confidently: on such a hand even the "
                                  "confident readings are often wrong, so they are checked too",
}
REVIEW_REASONS = frozenset(REASONS)
# The reasons routing itself gives, recomputed each time it runs (the others come from the fields stage).
ROUTE_REASONS = frozenset({Reason.LOW_CONFIDENCE.value, Reason.ILLEGIBLE.value, Reason.UNFAMILIAR_HAND.value})
# Statuses only a reviewer gives: routing leaves those cells alone.
REVIEWED_STATUSES = frozenset({"corrected", "illegible"})


def threshold_for(template: Template, field: str | None) -> float:
    """Minimum confidence to auto-accept a cell of this field (stricter on key fields)."""
    key_fields = {column.key for column in template.columns if column.key_field}
    if field in key_fields:
        return 1.0 - (1.0 - template.review_threshold) * KEY_FIELD_ERROR_SHARE
    return template.review_threshold


def route(cells: list[Cell], template: Template, hand_rule: bool = True) -> list[Cell]:
    """Copies of one page's cells with final status and reasons ('accepted', 'needs_review', 'empty').
    `hand_rule=False` leaves out the per-page `unfamiliar-hand` rule: for confidences calibrated on this
    register's own reviewed cells (`pipeline.run.recalibrate`), which already know the hand."""
    routed = [_route_cell(cell, template) for cell in cells]
    if not hand_rule or not unfamiliar_hand(routed):
        return routed
    return [cell.model_copy(update={"status": "needs_review", "reasons": [Reason.UNFAMILIAR_HAND.value]})
            if cell.status == "accepted" else cell for cell in routed]


def unfamiliar_hand(cells: list[Cell]) -> bool:
    """Whether few of a page's machine-read cells (not empty, not answered by a reviewer) were accepted."""
    read = [cell for cell in cells if cell.status in ("accepted", "needs_review")]
    return few_accepted(len(read), sum(cell.status == "accepted" for cell in read))


def few_accepted(read: int, accepted: int) -> bool:
    """The page rule on counts: `accepted` of a page's `read` readings say its hand is read poorly."""
    return read >= MIN_CELLS_TO_JUDGE_HAND and accepted < FAMILIAR_HAND_SHARE * read


def awaits_review(cell: Cell, cells_by_id: dict[str, Cell]) -> bool:
    """Whether a cell's value still waits on a reviewer: its own reading, or the reading its ditto mark
    copied the value from (a historian should not take either as settled). The store's row statistics
    apply the same rule in SQL (`pipeline.run.store.row_stats_sql`)."""
    source = cells_by_id.get(cell.value_from) if cell.value_from else None
    return cell.status == "needs_review" or (source is not None and source.status == "needs_review")


def _route_cell(cell: Cell, template: Template) -> Cell:
    if cell.status in REVIEWED_STATUSES:
        return cell
    if cell.status == "empty" and not cell.text.strip():
        return cell.model_copy(update={"value": None})
    reasons = [reason for reason in cell.reasons if reason not in ROUTE_REASONS]
    if is_illegible(cell.text):
        reasons.append(Reason.ILLEGIBLE.value)
    if cell.confidence < threshold_for(template, cell.field):
        reasons.append(Reason.LOW_CONFIDENCE.value)
    reasons = list(dict.fromkeys(reasons))
    return cell.model_copy(update={"reasons": reasons, "status": "needs_review" if reasons else "accepted"})
