"""The run report (RUN_DIR/report.html) and `census show`: self-contained, escaped, with the
run's counts and failures, and page overlays coloured by each cell's current status."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.run import store
from pipeline.run.report import STATUS_COLOURS, gather, write_report
from pipeline.run.batch import run
from pipeline.run.paths import page_image_path
from pipeline.run.runner import RunOptions

HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synth import generate_pages

    pages = tmp_path_factory.mktemp("pages")
    generate_pages(pages, 2, seed=31)
    (pages / HOSTILE_NAME).write_bytes(b"")  # a failure whose name is HTML
    out = tmp_path_factory.mktemp("run") / "run"
    run([pages], RunOptions(out=out, engine="null", workers=2), progress=False)
    return out


def test_report_is_written_by_the_run_and_self_contained(run_dir: Path) -> None:
    document = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in document.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", document, re.IGNORECASE)
    assert "<link" not in document.lower()
    images = re.findall(r"<img [^>]*src='([^']*)'", document)
    assert len(images) == 2 and all(src.startswith("data:image/jpeg;base64,") for src in images)
    assert "<svg" in document  # the confidence histogram, inline


def test_report_shows_counts_failures_and_throughput(run_dir: Path) -> None:
    document = (run_dir / "report.html").read_text(encoding="utf-8")
    data = gather(run_dir)
    assert data["counts"]["pages"] == 2
    assert data["failure_reasons"] == {"unsupported-format": 4, "empty-file": 1}  # the synthetic pages' XML, JSON
    with store.connect(run_dir, readonly=True) as connection:
        written = connection.execute("SELECT COUNT(*) FROM cells WHERE machine_status != 'empty'").fetchone()[
            0
        ]
    assert written and sum(data["confidence_bins"]) == written
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in document  # shown, escaped
    assert "<img src=x" not in document
    assert "<td>pages failed</td><td>1</td>" in document
    assert "<td>files skipped (format not read)</td><td>4</td>" in document
    for label in ("pages done", "auto-accepted", "empty-file", "pages per minute", "stage: recognise"):
        assert label in document
    assert f"<td>{data['counts']['cells']}</td>" in document


def test_thumbnails_are_capped(run_dir: Path, tmp_path: Path) -> None:
    document = write_report(run_dir, max_thumbnails=1).read_text(encoding="utf-8")
    assert len(re.findall(r"<img ", document)) == 1
    assert "1 more pages" in document
    write_report(run_dir)


def census_show(run_dir: Path, page: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "show", str(run_dir), page, "--out", str(out)],
        capture_output=True,
        timeout=300,
        env={**os.environ},
    )


def mean_colour(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)


def first_written_cells(run_dir: Path, n: int) -> list[sqlite3.Row]:
    with store.connect(run_dir, readonly=True) as connection:
        return connection.execute(
            "SELECT cell_id, page_id, x0, y0, x1, y1 FROM cells WHERE status = 'needs_review' "
            "ORDER BY page_id, row, col LIMIT ?",
            (n,),
        ).fetchall()


def tint_towards(observed: np.ndarray, plain: np.ndarray, colour: tuple[int, int, int]) -> float:
    """How far the overlay moved a region's mean colour towards `colour` (cosine, -1..1)."""
    moved, wanted = observed - plain, np.array(colour, dtype=float) - plain
    return float(moved @ wanted / (np.linalg.norm(moved) * np.linalg.norm(wanted) + 1e-9))


def test_show_colours_cells_by_current_status(run_dir: Path, tmp_path: Path) -> None:
    review_cell, corrected_cell = first_written_cells(run_dir, 2)
    with store.connect(run_dir) as connection, connection:
        connection.execute(
            "INSERT INTO corrections (cell_id, old_value, new_value, new_status, reviewer, corrected_at, source) "
            "VALUES (?, '', 'Joan', 'corrected', 'test', '2026-01-01T00:00:00', 'test')",
            (corrected_cell["cell_id"],),
        )
        store.reapply_corrections(connection, corrected_cell["page_id"])
    page_id = review_cell["page_id"]
    completed = census_show(run_dir, page_id[:10], tmp_path / "overlay.png")
    assert completed.returncode == 0, completed.stderr.decode()
    overlay = cv2.imread(str(tmp_path / "overlay.png"))
    plain = cv2.imread(str(page_image_path(run_dir, page_id)))
    assert overlay.shape == plain.shape
    for cell, status in ((review_cell, "needs_review"), (corrected_cell, "corrected")):
        box = (cell["x0"] + 4, cell["y0"] + 4, cell["x1"] - 4, cell["y1"] - 4)
        closeness = tint_towards(mean_colour(overlay, box), mean_colour(plain, box), STATUS_COLOURS[status])
        assert closeness > 0.9, (status, closeness)


def test_show_unknown_page_is_a_usage_error(run_dir: Path, tmp_path: Path) -> None:
    completed = census_show(run_dir, "no-such-page", tmp_path / "x.png")
    assert completed.returncode == 2
    assert "no page" in completed.stderr.decode()


def test_each_column_is_labelled_with_its_field_and_how_it_was_mapped(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    from pipeline.models import PageResult
    from pipeline.run.paths import page_json_path
    from pipeline.run.report import COLUMN_COLOURS

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    page_id = first_written_cells(copy, 1)[0]["page_id"]
    path = page_json_path(copy, page_id)
    result = PageResult.model_validate_json(path.read_bytes())
    assert set(result.columns.method.values()) == {"header"}  # the generator's headers are all read
    result.columns.method[1] = "position"  # as a page whose header could not be read ...
    result.columns.fields[2] = None  # ... and one mapped before every column was kept
    path.write_text(result.model_dump_json())
    assert census_show(copy, page_id, tmp_path / "overlay.png").returncode == 0
    overlay = cv2.imread(str(tmp_path / "overlay.png"))
    affine = np.array(result.preprocess.to_original)
    for col, method in ((0, "header"), (1, "position"), (2, None), (3, "header")):
        x0, y0 = (np.array([result.grid.col_bounds[col], result.grid.row_bounds[0], 1.0]) @ affine.T).astype(int)
        strip = overlay[y0 + 3: y0 + 5, x0 + 4: x0 + 40].reshape(-1, 3).astype(int)
        share = np.mean(np.abs(strip - COLUMN_COLOURS[method]).max(axis=1) < 10)
        assert share > 0.5, (col, method, share)
    write_report(copy)
    document = (copy / "report.html").read_text(encoding="utf-8")
    caption = f"columns: {result.columns.fields[0]} | <b>{result.columns.fields[1]}</b> (by position (header not read))"
    assert f"{caption} | <b>unmapped</b> | " in document
    assert "column labels, the field each column was read as" in document


def test_a_header_groups_sub_column_rule_is_drawn_from_under_its_title() -> None:
    """The drawn grid has the printed form's shape: a group title's cell over its sub-columns, so a group
    found where the form has none (or missed where it has one) shows."""
    from types import SimpleNamespace

    from pipeline.models import Grid, HeaderGroup
    from pipeline.run.report import GRID_COLOUR, _draw_grid

    grid = Grid(row_bounds=[10, 60, 110], col_bounds=[10, 100, 200, 300],
                header_groups=[HeaderGroup(first=1, last=2, bottom=30)])
    image = np.zeros((120, 320, 3), np.uint8)
    _draw_grid(image, SimpleNamespace(grid=grid, preprocess=SimpleNamespace(to_original=[[1, 0, 0], [0, 1, 0]])), 1.0)
    drawn = (image == GRID_COLOUR).all(axis=2)
    assert drawn[20, 100] and not drawn[20, 200] and drawn[45, 200]  # the sub-column rule starts at the title's bottom
    assert drawn[30, 150:300].all() and not drawn[30, 20:90].any()  # the title's cell closes over its columns only


def test_a_sub_column_rule_is_not_drawn_across_a_cell_written_over_it() -> None:
    from types import SimpleNamespace

    from pipeline.models import CellSpan, Grid, HeaderGroup
    from pipeline.run.report import GRID_COLOUR, _draw_grid

    grid = Grid(row_bounds=[10, 60, 110, 160, 210], col_bounds=[10, 100, 200, 300],
                header_groups=[HeaderGroup(first=1, last=2, bottom=30)], spans=[CellSpan(row=1, first=1, last=2, col=2)])
    image = np.zeros((220, 320, 3), np.uint8)
    _draw_grid(image, SimpleNamespace(grid=grid, preprocess=SimpleNamespace(to_original=[[1, 0, 0], [0, 1, 0]])), 1.0)
    drawn = (image == GRID_COLOUR).all(axis=2)
    assert drawn[45, 200] and drawn[85, 200] and not drawn[135, 200] and drawn[185, 200]  # broken in data row 1 only
    assert drawn[135, 100]  # a rule between columns of their own is whole
