"""Cell crops: cut each table cell out of the processed page, clear of its ruling lines,
and tell blank cells from written ones before any recogniser is run on them.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.htr.preprocess import percentiles
from pipeline.models import BBox

# Fraction of the cell's smaller side trimmed on each edge, so that ruling lines (and
# their jitter after deskew) stay out of the crop.
INSET_FRACTION = 0.08
# A cell is blank when under this fraction of its interior pixels is ink.
BLANK_INK_FRACTION = 0.004
# Paper kept around the writing, as fractions of the cell's height.
SIDE_MARGIN = 0.25
VERTICAL_MARGIN = 0.17


def inset(box: BBox, fraction: float = INSET_FRACTION) -> BBox:
    margin = max(2, int(round(min(box.width, box.height) * fraction)))
    return BBox(x0=box.x0 + margin, y0=box.y0 + margin // 2,
                x1=max(box.x0 + margin + 1, box.x1 - margin), y1=max(box.y0 + margin, box.y1 - margin // 2))


def crop(image: np.ndarray, box: BBox) -> np.ndarray:
    height, width = image.shape[:2]
    x0, x1 = np.clip([box.x0, box.x1], 0, width)
    y0, y1 = np.clip([box.y0, box.y1], 0, height)
    return image[y0:y1, x0:x1]


def ink_mask(crop_image: np.ndarray) -> np.ndarray:
    """Ink pixels by Otsu threshold, guarded so a clean white crop is not all 'ink'."""
    if crop_image.size == 0:
        return np.zeros((0, 0), dtype=bool)
    threshold, _ = cv2.threshold(crop_image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Otsu on a nearly uniform crop splits paper noise; demand real contrast with paper.
    (paper,) = percentiles(crop_image, (90,))
    return crop_image <= min(threshold, paper - 40)  # Otsu: pixels above the threshold are paper


def remove_rule_remnants(crop_image: np.ndarray) -> np.ndarray:
    """Whiten long thin horizontal/vertical strokes left over from ruling lines."""
    mask = ink_mask(crop_image).astype(np.uint8)
    if mask.size == 0:
        return crop_image
    height, width = mask.shape
    cleaned = crop_image.copy()
    for kernel_shape in ((max(3, int(width * 0.6)), 1), (1, max(3, int(height * 0.8)))):
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, kernel_shape)
        lines = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        cleaned[lines.astype(bool)] = 255
    return cleaned


def is_blank(crop_image: np.ndarray) -> bool:
    mask = ink_mask(crop_image)
    return mask.size == 0 or float(mask.mean()) < BLANK_INK_FRACTION


def writing_mask(crop_image: np.ndarray) -> np.ndarray:
    """Ink pixels without the specks of dust and scan noise: a speck beside the writing would keep
    blank paper in the crop and read as a stray '.' or accent."""
    mask = ink_mask(crop_image).astype(np.uint8)
    if mask.size == 0:
        return mask.astype(bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = max(4, (crop_image.shape[0] // 12) ** 2)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def trim_to_writing(crop_image: np.ndarray) -> np.ndarray:
    """Drop the blank paper around the writing, keeping a margin of a quarter of the cell's height
    left and right and a sixth above and below: the recogniser's cost grows with width, a short
    word in a wide column is mostly paper, and writing that fills its crop's height (as in the
    training lines and cells) reads better than small writing in a tall cell."""
    mask = writing_mask(crop_image)
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if columns.size == 0:
        return crop_image
    side, vertical = (int(crop_image.shape[0] * fraction) for fraction in (SIDE_MARGIN, VERTICAL_MARGIN))
    return crop_image[max(0, rows[0] - vertical): rows[-1] + 1 + vertical,
                      max(0, columns[0] - side): columns[-1] + 1 + side]


def text_crop(image: np.ndarray, box: BBox) -> np.ndarray:
    """The written part of a cell: inset, rule remnants removed, blank paper around the writing trimmed."""
    return trim_to_writing(remove_rule_remnants(crop(image, inset(box))))
