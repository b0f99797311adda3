"""Review bridge pieces that need no server: answer parsing, review order, crops, training export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pipeline.run import store
from pipeline.stages.templates import load_template
from review import bench, crops, pull, push, training


def test_answers_become_text_and_status() -> None:
    text = [{"from_name": "reading", "to_name": "crop", "type": "textarea", "value": {"text": [" Joan Puig "]}}]
    verdict = [{"from_name": "verdict", "to_name": "crop", "type": "choices", "value": {"choices": ["illegible"]}}]
    assert pull.parse_result(text) == ("Joan Puig", "corrected")
    assert pull.parse_result(text + verdict) == ("", "illegible")
    assert pull.parse_result([]) == ("", "empty")


def test_annotation_history_is_ordered_and_skips_are_ignored() -> None:
    tasks = [{"data": {"cell_id": "p:r0:c0"}, "annotations": [
        {"id": 7, "completed_by": 1, "updated_at": "2026-01-02T00:00:00Z", "result": bench.reading_result("b")},
        {"id": 5, "completed_by": 2, "updated_at": "2026-01-01T00:00:00Z", "result": bench.reading_result("a")},
        {"id": 9, "completed_by": 1, "updated_at": "2026-01-03T00:00:00Z", "result": [], "was_cancelled": True}]}]
    found = pull.corrections_of(tasks, project=3, reviewers={1: "ana@x", 2: "pau@x"})
    assert [(c.new_value, c.reviewer, c.annotation_id) for c in found] == [("a", "pau@x", "p3-a5"),
                                                                        ("b", "ana@x", "p3-a7")]


def test_queue_order_puts_key_fields_and_low_confidence_first(tmp_path: Path) -> None:
    bench.make_review_run(tmp_path, pages=1, rows=3)
    template = load_template(bench.TEMPLATE)
    with store.connect(tmp_path) as connection:
        queue = push.queued_cells(connection, template)
    keys = [(not template.column(cell["field"]).key_field, cell["confidence"]) for cell in queue]
    assert keys == sorted(keys) and keys[0][0] is False and keys[-1][0] is True


def test_a_queued_cell_says_how_many_ditto_marks_copy_its_value(tmp_path: Path) -> None:
    from pipeline.stages import fields
    from pipeline.models import BBox, Cell, PageInfo, PageResult

    template = load_template(bench.TEMPLATE)
    texts = [("Reus", "needs_review"), ("id.", "accepted"), ("〃", "accepted"), ("Vic", "needs_review")]
    cells = [Cell(cell_id=f"p-p0:r{row}:c5", page_id="p-p0", row=row, col=5, field="birth_place", text=text,
                  confidence=0.5, status=status, bbox=BBox(x0=500, y0=row * 50, x1=590, y1=row * 50 + 40))
             for row, (text, status) in enumerate(texts)]
    cells, persons = fields.interpret(cells, template)
    with store.connect(tmp_path) as connection:
        store.create(connection, template)
        store.write_page(connection, PageResult(page=PageInfo(page_id="p-p0", source="a.png", page_index=0, width=900,
                                                              height=300), template=template.name,
                                                cells=cells, persons=persons), template)
        queue = {cell["machine_text"]: cell for cell in push.queued_cells(connection, template)}
    assert (queue["Reus"]["copies"], queue["Vic"]["copies"]) == (2, 0)
    context = push.task_data(queue["Reus"], template, tmp_path, tmp_path)["context"]
    assert context.endswith("row 1 · its value is copied by 2 ditto marks below")
    assert push.task_data(queue["Vic"], template, tmp_path, tmp_path)["context"].endswith("row 4")


def test_crops_are_cut_from_the_page_image(tmp_path: Path) -> None:
    bench.make_review_run(tmp_path, pages=1, rows=2)
    with store.connect(tmp_path) as connection:
        cells = [dict(row) for row in connection.execute("SELECT * FROM cells")]
        rows = push.row_boxes(connection, {cells[0]["page_id"]})
    assert crops.write_cell_images(tmp_path, cells, rows, set()) == {cell["cell_id"] for cell in cells}
    import cv2

    crop = cv2.imread(str(crops.crop_path(tmp_path, cells[0]["cell_id"])), cv2.IMREAD_GRAYSCALE)
    box = cells[0]
    assert crop.shape[1] > box["x1"] - box["x0"] and crop.min() < 60  # padded, and holds dark ink
    assert ":" not in crops.crop_path(tmp_path, cells[0]["cell_id"]).name


def test_training_export_writes_lines_texts_and_manifest(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    bench.make_review_run(run_dir, pages=1, rows=2)
    template = load_template(bench.TEMPLATE)
    page_id = bench.page_id_of(0)
    answers = [pull.Correction(cell_id=f"{page_id}:r0:c0", new_value="Josep Puig i Serra", new_status="corrected",
                               reviewer="ana", corrected_at="2026-01-01T00:00:00Z", annotation_id="p1-a1"),
               pull.Correction(cell_id=f"{page_id}:r1:c0", new_value="", new_status="illegible",
                               reviewer="ana", corrected_at="2026-01-01T00:00:01Z", annotation_id="p1-a2")]
    with store.connect(run_dir) as connection:
        assert pull.apply_batch(connection, answers, template)[0] == 2
    assert training.export_training(run_dir, tmp_path / "out") == 1
    entry = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    assert (entry["text"], entry["machine_text"], entry["reviewer"]) == ("Josep Puig i Serra", "Josep Puig Serra", "ana")
    assert (tmp_path / "out" / "lines" / f"{crops.safe_name(entry['cell_id'])}.gt.txt").read_text() == entry["text"]
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        assert connection.execute("SELECT name FROM persons WHERE row = 0").fetchone()[0] == "Josep Puig i Serra"
