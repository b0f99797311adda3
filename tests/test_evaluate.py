"""Scoring of the table evaluation: box matching, row recall, CER, field accuracy, reviewer load."""

from pipeline.evaluation.evaluate import GroundTruthCell, iou, match_boxes, score_page, summarise
from pipeline.models import BBox, Cell, PageInfo, PageResult


def box(x0: int, y0: int, x1: int, y1: int) -> BBox:
    return BBox(x0=x0, y0=y0, x1=x1, y1=y1)


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    assert iou(box(0, 0, 10, 10), box(0, 0, 10, 10)) == 1.0
    assert iou(box(0, 0, 10, 10), box(20, 20, 30, 30)) == 0.0
    assert abs(iou(box(0, 0, 10, 10), box(5, 0, 15, 10)) - 1 / 3) < 1e-9


def test_matching_is_one_to_one_and_needs_half_overlap():
    truth = [box(0, 0, 10, 10), box(10, 0, 20, 10)]
    predicted = [box(1, 0, 11, 10), box(0, 0, 10, 10), box(12, 0, 22, 10), box(15, 0, 25, 10)]
    pairs = match_boxes(predicted, truth)
    assert sorted(pairs) == [(1, 0), (2, 1)]


def cell(row: int, col: int, text: str, value: object, field: str, status: str = "accepted") -> Cell:
    return Cell(cell_id=f"p:r{row}:c{col}", page_id="p", row=row, col=col, field=field, text=text, value=value,
                confidence=0.9, status=status, bbox=box(col * 100, row * 50, col * 100 + 100, row * 50 + 50))


def test_score_page_counts_detection_text_and_values():
    predicted = [cell(0, 0, "Josep Puig", "Josep Puig", "name"), cell(0, 1, "36", 36, "age"),
                 cell(1, 0, "Maria Serra", "Maria Serra", "name", "needs_review"), cell(1, 1, "3O", None, "age")]
    truth = [GroundTruthCell(row=c.row, col=c.col, bbox=c.bbox, text=t, field=c.field, value=v)
             for c, t, v in zip(predicted, ["Josep Puig", "36", "Maria Serra", "30"], ["Josep Puig", 36, "Maria Serra", 30])]
    truth.append(GroundTruthCell(row=2, col=0, bbox=box(0, 100, 100, 150), text="", field="name"))
    result = PageResult(page=PageInfo(page_id="p", source="x.png", page_index=0, width=300, height=200),
                        template="t", cells=predicted)
    scores = score_page(result, truth, "x.png")
    assert (scores.matched_cells, scores.gt_cells, scores.predicted_cells) == (4, 5, 4)
    assert (scores.matched_rows, scores.gt_rows) == (2, 3)
    assert scores.char_errors == 1 and scores.chars == len("Josep Puig36Maria Serra30")
    assert (scores.values_correct, scores.values) == (3, 4)
    assert scores.columns_correct == scores.columns == 2
    summary = summarise([scores])
    assert summary.cell_precision == 1.0 and summary.cell_recall == 0.8
    assert abs(summary.cell_f1 - 2 * 0.8 / 1.8) < 1e-3
    # a reviewer sees Maria Serra only; "3O" went through unseen, and is wrong
    assert (scores.written_cells, scores.accepted, scores.accepted_wrong) == (4, 3, 1)
    assert summary.auto_accepted == 0.75 and summary.accepted_error == round(1 / 3, 4)


def test_a_value_copied_from_a_cell_awaiting_review_is_not_settled():
    source = cell(0, 0, "Reus", "Reus", "birth_place", "needs_review")  # really "Vic"
    ditto = cell(1, 0, "id.", "Reus", "birth_place").model_copy(update={"value_from": source.cell_id})
    written = cell(2, 0, "Olot", "Olot", "birth_place")
    truth = [GroundTruthCell(row=c.row, col=c.col, bbox=c.bbox, text=t, field=c.field, value=v)
             for c, t, v in zip([source, ditto, written], ["Vic", "id.", "Olot"], ["Vic", "Vic", "Olot"])]
    result = PageResult(page=PageInfo(page_id="p", source="x.png", page_index=0, width=300, height=200),
                        template="t", cells=[source, ditto, written])
    scores = score_page(result, truth, "x.png")
    # the ditto's text is right and accepted, but its value waits on row 0's review
    assert (scores.accepted, scores.accepted_wrong) == (2, 0)
    assert (scores.values, scores.settled_values, scores.settled_wrong) == (3, 1, 0)
    summary = summarise([scores])
    assert summary.settled == round(1 / 3, 4) and summary.settled_error == 0.0


def test_a_ditto_read_with_another_quote_glyph_is_right_but_a_ditto_read_as_text_is_not():
    """The same strokes are '〃' in one transcription and '"' in another; 'id.' for '〃' is a misreading."""
    predicted = [cell(0, 0, '"', "Reus", "birth_place"), cell(1, 0, "〃〃", "Reus", "birth_place"),
                 cell(2, 0, "id.", "Reus", "birth_place"), cell(3, 0, "11", None, "birth_place")]
    truth = [GroundTruthCell(row=c.row, col=c.col, bbox=c.bbox, text="〃", field=c.field, value="Reus")
             for c in predicted]
    result = PageResult(page=PageInfo(page_id="p", source="x.png", page_index=0, width=300, height=200),
                        template="t", cells=predicted)
    scores = score_page(result, truth, "x.png")
    assert (scores.accepted, scores.accepted_wrong) == (4, 2)
    assert (scores.char_errors, scores.chars) == (3 + 2, 4)
