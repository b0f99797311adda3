"""Cell crops: blank detection, rule remnants and trimming to the writing."""

import cv2
import numpy as np

from pipeline.stages.cells import is_blank, text_crop, trim_to_writing
from pipeline.models import BBox


def page_with_word() -> np.ndarray:
    page = np.full((120, 600), 235, np.uint8)
    cv2.rectangle(page, (0, 0), (599, 119), 40, 2)  # the cell's ruling
    cv2.putText(page, "Puig", (60, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 30, 3)
    return page


def test_blank_cell_is_blank_and_written_one_is_not():
    page = page_with_word()
    assert not is_blank(text_crop(page, BBox(x0=0, y0=0, x1=600, y1=120)))
    empty = np.full((120, 600), 235, np.uint8)
    cv2.rectangle(empty, (0, 0), (599, 119), 40, 2)
    assert is_blank(text_crop(empty, BBox(x0=0, y0=0, x1=600, y1=120)))


def test_paper_around_the_writing_is_trimmed_with_a_margin():
    crop = text_crop(page_with_word(), BBox(x0=0, y0=0, x1=600, y1=120))
    assert crop.shape[1] < 300  # the word is ~110 px wide in a 600 px cell
    assert 40 < crop.shape[0] < 90  # the word is ~30 px tall in a 120 px cell
    assert crop[:, :10].min() > 200 and crop[:, -10:].min() > 200  # paper margins kept on all sides
    assert crop[:3].min() > 200 and crop[-3:].min() > 200
    assert trim_to_writing(np.full((40, 200), 255, np.uint8)).shape == (40, 200)  # nothing written: unchanged


def test_specks_of_dust_do_not_keep_blank_paper_in_the_crop():
    page = page_with_word()
    for x, y in ((500, 30), (540, 95), (20, 100)):  # scan noise far from the word
        page[y:y + 2, x:x + 2] = 30
    crop = text_crop(page, BBox(x0=0, y0=0, x1=600, y1=120))
    assert crop.shape[1] < 300 and crop.shape[0] < 90


def test_percentiles_match_numpy() -> None:
    from pipeline.htr.preprocess import percentiles

    rng = np.random.default_rng(3)
    for shape in [(1, 1), (1, 2), (7, 13), (40, 300)]:
        values = rng.integers(0, 256, size=shape).astype(np.uint8)
        np.testing.assert_allclose(percentiles(values, (1, 50, 90, 100)), np.percentile(values, (1, 50, 90, 100)), atol=1e-9)
