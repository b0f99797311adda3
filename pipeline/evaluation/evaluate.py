"""`census eval GT_DIR --tables`: run the pipeline on ground-truth pages and score the table
stages: cell detection (precision/recall/F1 at IoU >= 0.5), row recall, column mapping,
cell text CER and typed field-value accuracy.

Images are paired with their PAGE XML by file stem (`<stem>.xml`, or `<stem>.p<k>.xml` for
page k of a multi-page file); a JSON ground truth beside it (same stem) adds field keys and
typed values.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel
from rapidfuzz.distance import Levenshtein

from pipeline.errors import PageError, UsageError
from pipeline.stages.fieldtypes import is_quote_ditto
from pipeline.models import BBox, Cell, PageResult
from pipeline.stages.route import awaits_review
from pipeline.run.runner import PageTask

IOU_THRESHOLD = 0.5


class GroundTruthCell(BaseModel):
    row: int  # data row, header excluded
    col: int
    bbox: BBox
    text: str
    field: str | None = None
    value: object = None


class PageScores(BaseModel):
    image: str
    page_index: int
    gt_cells: int
    predicted_cells: int
    matched_cells: int
    gt_rows: int
    matched_rows: int
    columns: int
    columns_correct: int
    char_errors: int
    chars: int
    values: int
    values_correct: int
    written_cells: int = 0  # matched cells with text in the ground truth
    accepted: int = 0  # of those, auto-accepted (not queued for review)
    accepted_wrong: int = 0  # of those, text not exactly the ground truth's
    settled_values: int = 0  # ground-truth values whose cell, and the cell a ditto copied, no reviewer sees
    settled_wrong: int = 0  # of those, value not the ground truth's
    error: str | None = None


class TablesEvaluation(BaseModel):
    pages: int
    pages_failed: int
    cell_precision: float
    cell_recall: float
    cell_f1: float
    row_recall: float
    column_accuracy: float
    cell_cer: float
    field_accuracy: float
    auto_accepted: float  # share of the written cells no reviewer sees
    accepted_error: float  # share of those auto-accepted cells whose text is wrong
    settled: float  # share of the typed values a historian gets with nothing awaiting review
    settled_error: float  # share of those values that are wrong
    per_page: list[PageScores]


def iou(a: BBox, b: BBox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a.width * a.height + b.width * b.height - inter)


def match_boxes(predicted: list[BBox], truth: list[BBox]) -> list[tuple[int, int]]:
    """One-to-one pairs (predicted index, truth index) with IoU >= threshold, best first."""
    candidates = sorted(((iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)
                         if p.x0 < t.x1 and t.x0 < p.x1 and p.y0 < t.y1 and t.y0 < p.y1), reverse=True)
    used_p, used_t, pairs = set(), set(), []
    for score, i, j in candidates:
        if score >= IOU_THRESHOLD and i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            pairs.append((i, j))
    return pairs


def union(boxes: list[BBox]) -> BBox:
    return BBox(x0=min(b.x0 for b in boxes), y0=min(b.y0 for b in boxes),
                x1=max(b.x1 for b in boxes), y1=max(b.y1 for b in boxes))


def rows_of(cells: list, key: str = "row") -> list[BBox]:
    by_row: dict[int, list[BBox]] = {}
    for cell in cells:
        by_row.setdefault(getattr(cell, key), []).append(cell.bbox)
    return [union(boxes) for _, boxes in sorted(by_row.items())]


def score_page(result: PageResult, truth: list[GroundTruthCell], image: str) -> PageScores:
    predicted: list[Cell] = result.cells
    pairs = match_boxes([c.bbox for c in predicted], [t.bbox for t in truth])
    row_pairs = match_boxes(rows_of(predicted), rows_of(truth))
    by_id = {cell.cell_id: cell for cell in predicted}
    char_errors = chars = values = values_correct = written = accepted = accepted_wrong = 0
    settled = settled_wrong = 0
    column_votes: dict[int, dict[str | None, int]] = {}
    for i, j in pairs:
        cell, gt = predicted[i], truth[j]
        truth_text = scored_text(gt.text)
        distance = Levenshtein.distance(scored_text(cell.text), truth_text)
        char_errors += distance
        chars += len(truth_text)
        if gt.text:
            written += 1
            if cell.status == "accepted":
                accepted += 1
                accepted_wrong += distance > 0
        column_votes.setdefault(gt.col, {}).setdefault(cell.field, 0)
        column_votes[gt.col][cell.field] += 1
        if gt.value not in (None, ""):
            right = normalise_value(cell.value) == normalise_value(gt.value)
            values += 1
            values_correct += right
            if cell.status == "accepted" and not awaits_review(cell, by_id):
                settled += 1
                settled_wrong += not right
    truth_fields = {gt.col: gt.field for gt in truth}
    columns_correct = sum(max(votes, key=votes.get) == truth_fields[col] for col, votes in column_votes.items())
    return PageScores(
        image=image, page_index=result.page.page_index, gt_cells=len(truth), predicted_cells=len(predicted),
        matched_cells=len(pairs), gt_rows=len({t.row for t in truth}), matched_rows=len(row_pairs),
        columns=len(truth_fields), columns_correct=columns_correct, char_errors=char_errors, chars=chars,
        values=values, values_correct=values_correct, written_cells=written, accepted=accepted,
        accepted_wrong=accepted_wrong, settled_values=settled, settled_wrong=settled_wrong)


def scored_text(text: str) -> str:
    """A cell's text as scored: a ditto drawn as strokes is one sign, whichever quote glyph stands for it."""
    return "〃" if is_quote_ditto(text) else text


def normalise_value(value: object) -> str:
    return "" if value is None else str(value).strip().casefold()


def ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 4) if denominator else 0.0


def summarise(scores: list[PageScores]) -> TablesEvaluation:
    scored = [s for s in scores if s.error is None]

    def total(name: str) -> int:
        return sum(getattr(s, name) for s in scored)

    precision = ratio(total("matched_cells"), total("predicted_cells"))
    recall = ratio(total("matched_cells"), total("gt_cells"))
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0
    return TablesEvaluation(
        pages=len(scored), pages_failed=len(scores) - len(scored), cell_precision=precision,
        cell_recall=recall, cell_f1=f1, row_recall=ratio(total("matched_rows"), total("gt_rows")),
        column_accuracy=ratio(total("columns_correct"), total("columns")),
        cell_cer=ratio(total("char_errors"), total("chars")),
        field_accuracy=ratio(total("values_correct"), total("values")),
        auto_accepted=ratio(total("accepted"), total("written_cells")),
        accepted_error=ratio(total("accepted_wrong"), total("accepted")),
        settled=ratio(total("settled_values"), total("values")),
        settled_error=ratio(total("settled_wrong"), total("settled_values")), per_page=scores)


def groundtruth_for(image: Path, page_index: int, multi_page: bool) -> Path | None:
    stem = f"{image.stem}.p{page_index}" if multi_page else image.stem
    xml = image.with_name(f"{stem}.xml")
    return xml if xml.exists() else None


def load_truth(xml_path: Path) -> list[GroundTruthCell]:
    """Data cells of a PAGE XML table, with field keys and typed values from the JSON beside it."""
    from pipeline.pagexml import read_json_groundtruth, read_table_groundtruth

    table = read_table_groundtruth(xml_path)
    json_path = xml_path.with_suffix(".json")
    extra = {}
    if json_path.exists():
        extra = {(c.row, c.col): c for c in read_json_groundtruth(json_path).cells}
    cells = []
    for cell in table.cells:
        if cell.row < table.header_rows:
            continue
        row = cell.row - table.header_rows
        known = extra.get((row, cell.col))
        cells.append(GroundTruthCell(
            row=row, col=cell.col, bbox=BBox.around(cell.polygon), text=cell.text,
            field=getattr(known, "field", None), value=getattr(known, "value", None)))
    return cells


def evaluate_tables(gt_dir: Path, template: str, engine: str) -> TablesEvaluation:
    """Run every stage on each ground-truth page (one process, this engine) and score it."""
    from pipeline.recognize import get_engine
    from pipeline.run.runner import plan, process_page
    from pipeline.stages.templates import load_template

    tasks = plan([gt_dir]).tasks
    page_counts = {task.source: 0 for task in tasks}
    for task in tasks:
        page_counts[task.source] += 1
    paired = [(task, xml) for task in tasks
              if (xml := groundtruth_for(task.source, task.page_index, page_counts[task.source] > 1))]
    if not paired:
        raise UsageError(f"no image in {gt_dir} has a PAGE XML ground truth beside it (same stem)")
    loaded_template, loaded_engine = load_template(template), get_engine(engine)
    scores = []
    with tempfile.TemporaryDirectory(prefix="census-eval-") as scratch:
        for number, (task, xml) in enumerate(paired, 1):
            print(f"[{number}/{len(paired)}] {task.source.name} page {task.page_index}", file=sys.stderr)
            try:
                result = process_page(task, loaded_template, loaded_engine, Path(scratch))
            except PageError as error:
                scores.append(failed_scores(task, str(error)))
                continue
            scores.append(score_page(result, load_truth(xml), str(task.source)))
    return summarise(scores)


def failed_scores(task: PageTask, error: str) -> PageScores:
    zero = dict.fromkeys(("gt_cells", "predicted_cells", "matched_cells", "gt_rows", "matched_rows", "columns",
                          "columns_correct", "char_errors", "chars", "values", "values_correct"), 0)
    return PageScores(image=str(task.source), page_index=task.page_index, error=error, **zero)
