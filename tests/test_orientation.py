"""Orientation: pages scanned sideways or upside down are turned upright, their cells map back onto the
turned original, writing that runs no clear way is left as it is, and a sideways page that cannot tell
which way up it is fails with `orientation-unknown`.

Also the bar measurement: `python tests/test_orientation.py --pages 40 --seed 7302 [--real ../shared/data]`
renders fresh synthetic pages (and reads the real ones), turns each by 0/90/180/270°, and prints per turn
how many came out upright, quarantined (`orientation-unknown`) or wrong, and the orientation cue's ms a page.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.errors import PageError
from pipeline.evaluation.evaluate import iou
from pipeline.models import BBox
from pipeline.stages.layout import cell_box, detect_grid
from pipeline.stages.orientation import is_sideways
from pipeline.stages.preprocess import (measure_skew, preprocess, to_original, to_processed,
                                        whiten_scan_background)
from pipeline.stages.templates import load_template
from pipeline.synth.page import render_page

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_PAGE = DATA / "lectaurep" / "lectaurep-riant-4" / "DAFANCH96_048MIC06490_L-1.jpg"
# cv2.rotate codes by the angle the content turns counter-clockwise (the `skew_deg` convention).
TURNS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def turn(image: np.ndarray, angle: int) -> np.ndarray:
    return image if angle == 0 else cv2.rotate(image, TURNS[angle])


def turn_points(points: np.ndarray, angle: int, shape: tuple[int, ...]) -> np.ndarray:
    """Pixel coordinates (x, y) on `image` of shape `shape`, as they lie on turn(image, angle)."""
    height, width = shape[:2]
    x, y = points[:, 0], points[:, 1]
    turned = {0: (x, y), 90: (y, width - x), 180: (width - x, height - y), 270: (height - y, x)}[angle]
    return np.stack(turned, axis=1)


def turn_error(skew_deg: float, expected_deg: float) -> float:
    """Angle between the turn applied and the one expected, in degrees (0-180)."""
    return abs((skew_deg - expected_deg + 180.0) % 360.0 - 180.0)


@pytest.fixture(scope="module")
def upright_page() -> tuple[np.ndarray, dict]:
    """A synthetic register page scanned upright, skewed by up to 3° as the generator draws it."""
    image, truth = render_page(load_template("padro-catala-1930"), 7303, skew_max_deg=3.0)
    return image, truth.model_dump(mode="json", by_alias=True)


@pytest.fixture(scope="module")
def upright_result(upright_page):
    result, processed = preprocess(upright_page[0])
    return result, detect_grid(processed)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_turned_page_is_read_as_the_upright_one(upright_page, upright_result, angle: int) -> None:
    upright, grid = upright_result
    result, processed = preprocess(turn(upright_page[0], angle))
    assert turn_error(result.skew_deg, upright.skew_deg + angle) <= 0.2
    turned_grid = detect_grid(processed)
    assert len(turned_grid.row_bounds) == len(grid.row_bounds) and len(turned_grid.col_bounds) == len(grid.col_bounds)
    assert np.abs(np.subtract(turned_grid.col_bounds, grid.col_bounds)).max() <= 3


@pytest.mark.parametrize("angle", [90, 270])
def test_cells_of_a_sideways_page_map_back_onto_its_own_pixels(upright_page, angle: int) -> None:
    """Review, browse and export crop cells from the original (sideways) scan through to_original."""
    image, truth = upright_page
    sideways = turn(image, angle)
    result, processed = preprocess(sideways)
    assert result.original_size == (sideways.shape[1], sideways.shape[0])
    grid = detect_grid(processed)
    true_cells = {(cell["row"], cell["col"]): np.array(cell["polygon"], dtype=np.float64) for cell in truth["cells"]}
    last_row = max(row for row, _ in true_cells)
    for row, col in ((0, 0), (5, 3), (last_row, truth["n_cols"] - 1)):
        box, polygon = to_original(result, cell_box(grid, row, col))
        assert iou(box, BBox.around(turn_points(true_cells[(row, col)], angle, image.shape))) > 0.7
        # And back: training on reviewed cells cuts them again from the processed page.
        found = to_processed(result, box)
        expected = cell_box(grid, row, col)
        assert max(abs(found.x0 - expected.x0), abs(found.y0 - expected.y0),
                   abs(found.x1 - expected.x1), abs(found.y1 - expected.y1)) <= 2


def test_grain_without_writing_is_not_turned() -> None:
    """Scanner grain makes blobs that run no way: the page goes on as it is (layout finds no table there)."""
    grain = np.random.default_rng(0).normal(235, 40, (1375, 2050))
    result, _ = preprocess(np.clip(grain, 0, 255).astype(np.uint8))
    assert turn_error(result.skew_deg, 0.0) <= 10.0


def test_blank_page_is_not_orientation_unknown() -> None:
    """Nothing written: nothing to turn, and layout says the page holds no table."""
    assert not is_sideways(np.full((1375, 2050), 240, np.uint8))


def header_less_body(upright_page) -> np.ndarray:
    """The page cut below its header band: rows alike from one end of the table to the other."""
    image, truth = upright_page
    # Below the lowest point of row 0's top edge: on a skewed page its highest leaves a wedge of header band.
    below_header = int(max(min(y for _, y in cell["polygon"]) for cell in truth["cells"] if cell["row"] == 0)) + 4
    return np.ascontiguousarray(image[below_header:])


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_table_without_a_header_band_is_turned_by_its_writing(upright_page, angle: int) -> None:
    """No ruling says which way up: the words' ink, low in their boxes upright, does."""
    body = header_less_body(upright_page)
    upright, _ = preprocess(body)
    result, _ = preprocess(turn(body, angle))
    assert turn_error(result.skew_deg, upright.skew_deg + angle) <= 0.2


def test_sideways_table_whose_writing_stands_both_ways_is_orientation_unknown(upright_page) -> None:
    """Neither ruling nor writing can tell which way up: half the rows upright, half upside down."""
    body = header_less_body(upright_page)
    both_ways = np.vstack([body, turn(body, 180)])
    preprocess(both_ways)  # upright, it goes on as it is
    with pytest.raises(PageError) as error:
        preprocess(turn(both_ways, 90))
    assert error.value.reason == "orientation-unknown"


@pytest.mark.skipif(not REAL_PAGE.exists(), reason="real register pages not in ../shared/data")
@pytest.mark.parametrize("angle", [90, 270])
def test_real_register_page_scanned_sideways_is_turned(angle: int) -> None:
    image = cv2.imread(str(REAL_PAGE), cv2.IMREAD_GRAYSCALE)
    upright, _ = preprocess(image)
    result, _ = preprocess(turn(image, angle))
    assert turn_error(result.skew_deg, upright.skew_deg + angle) <= 0.2


# --- the bar measurement ---------------------------------------------------------------------


def outcome(image: np.ndarray, expected_deg: float) -> str:
    try:
        result, _ = preprocess(image)
    except PageError as error:
        return error.reason
    return "right" if turn_error(result.skew_deg, expected_deg) <= 1.0 else "wrong"


def cue_ms(image: np.ndarray) -> float:
    """Time of the orientation cue alone, on the page as preprocess gives it (background whitened)."""
    page = whiten_scan_background(image)
    start = time.perf_counter()
    is_sideways(page)
    return 1000 * (time.perf_counter() - start)


def measure(pages: list[tuple[str, np.ndarray, float]]) -> dict:
    """Per turn: outcome counts; and the cue's median and max ms a page (upright pages)."""
    counts: dict[int, dict[str, int]] = {angle: {} for angle in (0, 90, 180, 270)}
    times = []
    for name, image, skew in pages:
        times.append(cue_ms(image))
        for angle in counts:
            got = outcome(turn(image, angle), skew + angle)
            counts[angle][got] = counts[angle].get(got, 0) + 1
            if got != "right":
                print(name, angle, got, file=sys.stderr, flush=True)
    return {"pages": len(pages), "per_turn": counts, "cue_ms_median": round(statistics.median(times), 1),
            "cue_ms_max": round(max(times), 1)}


def main() -> None:
    """Render fresh pages (and read the real ones), turn each way, print outcomes per turn as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7302)
    parser.add_argument("--real", type=Path, default=None, help="folder of real pages (searched for *.jpg)")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in a run's worker processes
    from pipeline.synth import generate_pages

    with tempfile.TemporaryDirectory() as folder:
        synthetic = [(path.name, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE),
                      json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["skew_deg"])
                     for path in generate_pages(Path(folder), args.pages, args.seed)]
    report = {"seed": args.seed, "synthetic": measure(synthetic)}
    if args.real:
        # Real scans carry no skew ground truth: expected is the page's own skew (±10°, no turn) plus the turn.
        for corpus in sorted(path for path in args.real.iterdir() if path.is_dir()):
            real = [(path.name, image, measure_skew(whiten_scan_background(image)))
                    for path in sorted(corpus.rglob("*.jpg"))
                    for image in [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)]]
            report[corpus.name] = measure(real)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
