"""Reviewer corrections become fine-tuning samples: latest `corrected` value per cell, crop from the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.htr.corrections import corrected_cells


def make_run_with_corrections(run_dir: Path) -> None:
    import cv2

    from pipeline.store import connect, create
    from pipeline.templates import available_templates, load_template

    page = np.full((400, 600), 230, np.uint8)
    cv2.putText(page, "Rosa", (40, 90), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 3)
    cv2.putText(page, "fill", (40, 240), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 3)
    run_dir.mkdir()
    cv2.imwrite(str(run_dir / "page.png"), page)
    with connect(run_dir) as connection:
        create(connection, load_template(next(iter(available_templates().values()))))
        connection.execute("INSERT INTO pages (page_id, source, page_index, status) VALUES ('p', ?, 0, 'done')",
                           (str(run_dir / "page.png"),))
        for cell, y0, text in (("p:r0:c0", 40, "Rasa"), ("p:r1:c0", 190, "fiil"), ("p:r2:c0", 300, "x")):
            connection.execute("INSERT INTO cells (cell_id, page_id, row, col, text, confidence, status, x0, y0, x1, y1) "
                               "VALUES (?, 'p', 0, 0, ?, 0.5, 'needs_review', 30, ?, 200, ?)", (cell, text, y0, y0 + 70))
        corrections = [("p:r0:c0", "Rosa", "corrected", "2026-01-01T10:00"),
                       ("p:r1:c0", "fil", "corrected", "2026-01-01T10:00"),
                       ("p:r1:c0", "fill", "corrected", "2026-01-02T10:00"),  # the latest one wins
                       ("p:r2:c0", "", "empty", "2026-01-01T10:00")]  # not a text correction
        connection.executemany("INSERT INTO corrections (cell_id, new_value, new_status, corrected_at, source) "
                               "VALUES (?, ?, ?, ?, 'test')", corrections)
        connection.commit()


def test_corrected_cells_are_latest_corrections_with_their_crops(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run_with_corrections(run_dir)
    crops, texts = corrected_cells(run_dir, 48)
    assert texts == ["Rosa", "fill"]
    assert all(crop.shape[0] == 48 and crop.dtype == np.uint8 for crop in crops)
    assert all(crop.min() < 100 for crop in crops)  # the written word is in the crop
