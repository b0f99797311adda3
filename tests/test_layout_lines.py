"""Text lines against the detected grid: inside one cell, cut across rows or columns, outside the table;
end to end on synthetic pages (their PAGE XML has a text line in each written cell) and a real register page."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import numpy as np

from pipeline.evaluation.layout_lines import classify, merged_cells, score_page, summarise, written_core

ROWS, COLS = [0, 50, 100, 150], [0, 100, 300]  # a header row and two data rows, two columns
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lectaurep" / "lectaurep-dufour-1"


@pytest.mark.parametrize(("core", "kind"), [
    ((110, 60, 290, 80), "inside"),
    ((110, 40, 290, 60), "rows"),  # half of it above the first data row's top rule
    ((50, 60, 200, 80), "columns"),
    ((50, 40, 200, 60), "both"),
    ((400, 60, 500, 80), "outside"),  # beside the table
    ((10, 95, 90, 115), "rows"),
    ((10, 60, 104, 80), "inside"),  # a few pixels over a rule still counts as inside
])
def test_a_line_core_is_classified_by_where_it_lies(core: tuple, kind: str) -> None:
    assert classify(core, ROWS, COLS) == kind


def test_a_cell_over_several_columns_holds_a_line_across_them() -> None:
    from pipeline.models import CellSpan, Grid, HeaderGroup

    grid = Grid(row_bounds=ROWS, col_bounds=COLS, header_groups=[HeaderGroup(first=0, last=1, bottom=25)],
                spans=[CellSpan(row=1, first=0, last=1, col=1)])
    title, sub_header = (50, 5, 250, 20), (50, 30, 250, 45)  # over both columns, above and below the group's bottom
    across_first_row, across_second_row = (50, 60, 200, 80), (50, 110, 200, 130)  # only the second row's is one cell
    merged = merged_cells(grid)
    assert [classify(core, ROWS, COLS, merged) for core in (title, sub_header, across_first_row, across_second_row)] \
        == ["inside", "columns", "columns", "inside"]
    assert classify(title, ROWS, COLS) == "columns"


def test_a_line_core_is_its_writing_not_its_padded_polygon() -> None:
    ink = np.zeros((150, 300), dtype=bool)
    ink[62:78, 120:280] = True  # the letters' bodies, in the second column of the first data row
    ink[50:62, 150:155] = ink[78:98, 200:204] = True  # an ascender, and a descender into the next row
    polygon_box = (60, 40, 295, 100)  # padded 40 px over the column rule at x=100, and further below
    core = written_core(polygon_box, ink)
    assert core[0] == 120 and core[2] == 280 and 62 <= core[1] < core[1] + 12 <= core[3] <= 78, core
    assert (classify(core, ROWS, COLS), classify(polygon_box, ROWS, COLS)) == ("inside", "both")
    assert written_core(polygon_box, np.zeros_like(ink)) == (60, 55, 295, 85)  # no writing: the box's middle half


def test_synthetic_pages_keep_every_line_in_one_cell(tmp_path: Path) -> None:
    from pipeline.htr.data import find_pages
    from pipeline.synth import generate_pages

    generate_pages(tmp_path, n_pages=2, seed=4711)
    pages = [score_page(page) for page in find_pages(tmp_path)]
    summary = summarise(pages)
    assert summary["pages"] == 2 and not summary["refused"] and summary["lines_in_table"] > 100
    assert summary["inside_one_cell_share"] >= 0.99, summary


@pytest.mark.skipif(not DATA.is_dir(), reason="real register pages not in ../shared/data")
def test_a_real_register_page_and_the_command(tmp_path: Path) -> None:
    page_dir = tmp_path / "page"
    page_dir.mkdir()
    for suffix in (".jpg", ".xml"):
        (page_dir / f"DAFANCH96_048MIC07644_L-1{suffix}").symlink_to(DATA / f"DAFANCH96_048MIC07644_L-1{suffix}")
    done = subprocess.run([sys.executable, "-m", "pipeline.evaluation.layout_lines", str(page_dir)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["pages"] == 1 and summary["lines"] > 50
    kinds = ("outside_table", "inside_one_cell", "cut_rows", "cut_columns", "cut_both")
    assert sum(summary[kind] for kind in kinds) == summary["lines"]
    assert 0.5 < summary["inside_one_cell_share"] <= 1


def test_a_folder_without_ground_truth_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.evaluation.layout_lines", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no ground-truth pages" in done.stderr and "Traceback" not in done.stderr
