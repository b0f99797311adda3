"""Preprocess: skew measured within 0.2°, upside-down pages turned, affine back to the original exact."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.evaluation.evaluate import iou
from pipeline.stages.layout import cell_box, detect_grid
from pipeline.models import BBox
from pipeline.stages.image import ink_mask
from pipeline.stages.preprocess import preprocess, to_original, to_processed
from pipeline.synth.page import render_page
from pipeline.stages.templates import load_template

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_PAGES = sorted((DATA / "lectaurep").glob("*/*.jpg"))[::40]


@pytest.fixture(scope="module")
def straight_page() -> tuple[np.ndarray, dict]:
    """A synthetic register page scanned without skew (faint, broken rules; text crossing them)."""
    image, truth = render_page(load_template("padro-catala-1930"), 11, skew_max_deg=0.0)
    return image, truth.model_dump(mode="json", by_alias=True)


def _turn(image: np.ndarray, angle_deg: float) -> np.ndarray:
    """Turn the content counter-clockwise by angle_deg, as a skewed scan would be."""
    height, width = image.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderValue=int(np.median(image)))


@pytest.mark.parametrize("angle", [-5.0, -3.7, -1.3, 0.0, 0.6, 2.45, 5.0])
def test_skew_measured_within_a_fifth_of_a_degree(straight_page, angle: float) -> None:
    result, _ = preprocess(_turn(straight_page[0], angle))
    assert abs(result.skew_deg - angle) <= 0.2


def test_affine_maps_processed_pixels_onto_the_original(straight_page) -> None:
    original = _turn(straight_page[0], 2.0)
    result, processed = preprocess(original)
    height, width = processed.shape
    pulled_back = cv2.warpAffine(original, np.asarray(result.to_original), (width, height),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=255)
    ink_a, ink_b = ink_mask(processed), ink_mask(pulled_back)
    assert (ink_a & ink_b).sum() / (ink_a | ink_b).sum() > 0.7
    assert result.original_size == (original.shape[1], original.shape[0])


def test_crop_keeps_the_table_with_a_margin(straight_page) -> None:
    image, truth = straight_page
    result, processed = preprocess(image)
    table = np.array(truth["table_polygon"])
    corners, _ = to_original(result, BBox(x0=0, y0=0, x1=processed.shape[1], y1=processed.shape[0]))
    assert corners.x0 <= table[:, 0].min() and corners.y0 <= table[:, 1].min()
    assert corners.x1 >= table[:, 0].max() and corners.y1 >= table[:, 1].max()
    assert corners.width * corners.height < 0.95 * image.shape[0] * image.shape[1]  # the title went
    assert processed.min() < 20 and processed.max() > 240  # contrast stretched


def test_upside_down_page_is_turned(straight_page) -> None:
    image, truth = straight_page
    height, width = image.shape
    result, processed = preprocess(cv2.rotate(image, cv2.ROTATE_180))
    assert abs(result.skew_deg - 180.0) <= 0.2
    grid = detect_grid(processed)
    first_cell, _ = to_original(result, cell_box(grid, 0, 0))
    true_cell = np.array(truth["cells"][0]["polygon"])  # row 0, column 0, turned by 180° too
    turned = BBox(x0=int(width - true_cell[:, 0].max()), y0=int(height - true_cell[:, 1].max()),
                  x1=int(width - true_cell[:, 0].min()), y1=int(height - true_cell[:, 1].min()))
    assert iou(first_cell, turned) > 0.7


def test_blank_page_passes_through() -> None:
    blank = np.full((900, 700), 240, np.uint8)
    result, processed = preprocess(blank)
    assert result.skew_deg == 0.0 and processed.shape == blank.shape
    assert result.crop == BBox(x0=0, y0=0, x1=700, y1=900)


def test_to_original_clips_the_box_but_not_the_polygon(straight_page) -> None:
    result, processed = preprocess(_turn(straight_page[0], -3.0))
    width, height = result.original_size
    box, polygon = to_original(result, BBox(x0=-500, y0=-500, x1=processed.shape[1] + 500, y1=40))
    assert (box.x0, box.y0) == (0, 0) and box.x1 == width
    assert min(x for x, _ in polygon) < 0


@pytest.mark.parametrize("angle", [-3.0, 0.0, 1.4, 180.8])
def test_to_processed_finds_the_cell_back_from_its_original_bounds(straight_page, angle: float) -> None:
    """Cells are stored by their bounds in original page pixels; training on reviewed cells cuts them again
    from the processed page, where the recogniser read them."""
    result, processed = preprocess(_turn(straight_page[0], angle))
    grid = detect_grid(processed)
    for row, col in ((0, 0), (3, 2), (len(grid.row_bounds) - 3, len(grid.col_bounds) - 2)):
        box = cell_box(grid, row, col)
        found = to_processed(result, to_original(result, box)[0])
        assert max(abs(found.x0 - box.x0), abs(found.y0 - box.y0), abs(found.x1 - box.x1), abs(found.y1 - box.y1)) <= 2


@pytest.mark.skipif(not REAL_PAGES, reason="real register pages not in ../shared/data")
@pytest.mark.parametrize("index", range(3))
def test_real_scans_upright_or_turned_and_without_scanner_border(index: int) -> None:
    image = cv2.imread(str(REAL_PAGES[index]), cv2.IMREAD_GRAYSCALE)
    result, processed = preprocess(image)
    assert abs(result.skew_deg) < 3.0  # the real pages are upright, skewed by well under 3°
    # The black scanner background is gone: no large black area left in the processed page.
    assert (processed < 40).mean() < 0.08
    turned, _ = preprocess(cv2.rotate(image, cv2.ROTATE_180))
    assert abs(turned.skew_deg - 180.0 - result.skew_deg) < 0.1
