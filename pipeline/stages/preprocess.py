"""Preprocess: measure and correct skew, turn upside-down pages, crop to the table, normalise contrast.

Skew is measured by projection profiles of the ink: at the right angle the long ruled
lines (and text lines) of a register collapse into sharp peaks, for rows and for columns
alike. The score is computed on sampled ink coordinates, so trying a hundred angles costs
milliseconds. A page whose writing runs up or down (`orientation`: scanned sideways) is
turned by a quarter turn, one whose printed header band is at the bottom of the table (or,
when the ruling says nothing, whose words' ink sits high in them) by a half turn: `skew_deg`
≈ 90, 180 or 270. A sideways page for which neither tells which way up it is fails with
`orientation-unknown`. Everything is recorded in
`PreprocessResult`, whose `to_original` affine maps processed pixels back to the original page.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from pipeline.errors import PageError
from pipeline.stages.image import ink_mask
from pipeline.stages.layout import TableRules, find_rules
from pipeline.stages.orientation import is_sideways, writing_way_up
from pipeline.models import BBox, PreprocessResult

MAX_SKEW_DEG = 10.0
COARSE_STEP_DEG = 0.25
FINE_STEP_DEG = 0.01
MAX_INK_POINTS = 150_000  # ink pixels sampled for deskew; 3 x 20 test pages: max error 0.0066° (400k: 0.0041°), 27% faster
CROP_MARGIN = 24  # px kept around the table
# A page whose "table" has fewer columns is a ruled letter or lined paper, whose writing (prose, flourishes)
# can stand either way by the words' ink: without this, 3 upright poilus wills of 122 were turned upside down.
MIN_COLUMNS_FOR_WRITING_CUE = 3
PAPER = 255


def preprocess(image: np.ndarray) -> tuple[PreprocessResult, np.ndarray]:
    """Deskew, turn, crop and normalise a grey page; returns the result and the processed image."""
    page = whiten_scan_background(image)
    sideways = is_sideways(page)
    skew = measure_skew(page) + (90.0 if sideways else 0.0)
    rotation, deskewed, table = turned(page, skew)
    header = header_side(table) if table is not None else None
    if header is None and table is not None and len(table.col_bounds) > MIN_COLUMNS_FOR_WRITING_CUE:
        # Rules irregular or broken: the writing may still say (on a register's table, not a ruled letter).
        header = {"up": "top", "down": "bottom", None: None}[writing_way_up(deskewed)]
    if sideways and header is None:
        raise PageError("orientation-unknown", "the page is sideways, and no header band at either end "
                                               "of a table says which way up")
    if header == "bottom":
        skew += 180.0
        rotation, deskewed, table = turned(page, skew)
    crop = table_bbox(table, deskewed.shape)
    processed = normalise_contrast(deskewed[crop.y0:crop.y1, crop.x0:crop.x1])
    result = PreprocessResult(skew_deg=round(skew, 3), crop=crop,
                              to_original=processed_to_original(rotation, crop),
                              original_size=(image.shape[1], image.shape[0]))
    return result, processed


# --- ink, rules and the table area --------------------------------------------------------


def whiten_scan_background(grey: np.ndarray) -> np.ndarray:
    """Paint with paper colour the scanner's dark background around the sheet.

    Background = dark areas, thicker than any stroke (a morphological opening removes rules and
    ink touching them), that reach the image edge. Found on a 4x smaller copy: it is coarse.
    """
    import cv2

    height, width = grey.shape
    small = cv2.resize(grey, (max(1, width // 4), max(1, height // 4)), interpolation=cv2.INTER_AREA)
    size = max(5, min(small.shape) // 100)
    dark = cv2.morphologyEx((small < 60).astype(np.uint8), cv2.MORPH_OPEN, np.ones((size, size), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    small_height, small_width = small.shape
    touching = ((stats[:, cv2.CC_STAT_LEFT] == 0) | (stats[:, cv2.CC_STAT_TOP] == 0)
                | (stats[:, cv2.CC_STAT_LEFT] + stats[:, cv2.CC_STAT_WIDTH] == small_width)
                | (stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT] == small_height))
    large = stats[:, cv2.CC_STAT_AREA] > 0.002 * small.size
    background = np.flatnonzero(touching & large)
    background = background[background != 0]  # label 0 is everything not dark
    if len(background) == 0:
        return grey
    rim = np.ones((size, size), np.uint8)  # the sheet's blurred, shadowed edge goes too
    small_mask = cv2.dilate(np.isin(labels, background).astype(np.uint8), rim)
    mask = cv2.resize(small_mask, (width, height), interpolation=cv2.INTER_NEAREST) > 0
    page = grey.copy()
    # Paper colour, not white: a white fill would draw a sharp false edge along the sheet's border.
    page[mask] = int(np.median(grey[~mask][::16])) if (~mask).any() else PAPER
    return page


def turned(page: np.ndarray, skew_deg: float) -> tuple[np.ndarray, np.ndarray, TableRules | None]:
    """The page turned by -skew_deg: the affine, the turned image and the table on it."""
    rotation = rotation_matrix(page.shape, skew_deg)
    deskewed = warp(page, rotation)
    return rotation, deskewed, find_table(deskewed)


def find_table(grey: np.ndarray) -> TableRules | None:
    """The table's rules on a deskewed page, or None when it has none."""
    try:
        return find_rules(grey)
    except PageError:
        return None


def table_bbox(table: TableRules | None, shape: tuple[int, ...]) -> BBox:
    """The table's ruled area plus a margin; the whole image when no table was found."""
    height, width = shape[:2]
    if table is None:
        return BBox(x0=0, y0=0, x1=width, y1=height)
    top = min([table.top, *table.row_rules])
    bottom = max([table.bottom, *table.row_rules])
    return BBox(x0=max(0, table.col_bounds[0] - CROP_MARGIN), y0=max(0, top - CROP_MARGIN),
                x1=min(width, table.col_bounds[-1] + CROP_MARGIN + 1),
                y1=min(height, bottom + CROP_MARGIN + 1))


def header_side(table: TableRules) -> Literal["top", "bottom"] | None:
    """Which end of the table holds its distinctive header band: "bottom" means the page is upside down.

    With regular row rules, the header is the band whose height differs from the rows; with
    only a few rules (header rule, borders), it is the short band at one end of the table.
    Irregular bands (free-form entries ruled off by hand) decide nothing (None): turning a page
    wrongly is worse than leaving it for review.
    """
    rules = np.array(sorted(set(table.row_rules) | {table.bottom}), dtype=np.float64)
    gaps = np.diff(rules)
    gaps = gaps[gaps > 0.02 * (rules[-1] - rules[0])]  # a border doubled by the verticals' end
    if len(gaps) < 2:
        return None
    if len(gaps) <= 3:
        return _short_end(gaps[0], gaps[-1], gaps.sum())
    rows = gaps[1:-1]
    typical = float(np.median(rows))
    if len(rows) < 3 or np.mean(np.abs(rows - typical) <= 0.15 * typical) < 0.7:  # not regular rows
        return None
    header_at_top = gaps[0] > 1.3 * typical and gaps[-1] <= 1.15 * typical
    header_below = gaps[-1] > 1.3 * typical and gaps[0] <= 1.15 * typical
    if header_at_top == header_below:
        return None
    return "top" if header_at_top else "bottom"


def _short_end(first: float, last: float, total: float) -> Literal["top", "bottom"] | None:
    """The end whose band is clearly the shorter one (a header band between few rules), if either."""
    if last < 0.6 * first and last < 0.25 * total:
        return "bottom"
    if first < 0.6 * last and first < 0.25 * total:
        return "top"
    return None


def normalise_contrast(grey: np.ndarray) -> np.ndarray:
    """Stretch so the darkest ink goes to 0 and the paper to 255 (1st and 99th percentiles)."""
    import cv2

    cumulative = np.cumsum(np.bincount(grey.ravel(), minlength=256)) / grey.size
    low, high = int(np.searchsorted(cumulative, 0.01)), int(np.searchsorted(cumulative, 0.99))
    if high - low < 30:  # a blank area: stretching would only amplify noise
        return grey.copy()
    table = np.clip((np.arange(256) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    return cv2.LUT(grey, table)


# --- skew ----------------------------------------------------------------------------------


def measure_skew(grey: np.ndarray) -> float:
    """Counter-clockwise skew of the page content in degrees (|skew| ≤ MAX_SKEW_DEG)."""
    ys, xs = np.nonzero(ink_mask(grey))
    if len(xs) < 100:
        return 0.0
    rng = np.random.default_rng(0)
    order = rng.permutation(len(xs))[:MAX_INK_POINTS]
    # Jitter each point within its pixel: on the bare pixel grid every angle but 0° smears ink
    # over two bins, so noise and text alone would make 0° look sharpest.
    xs = xs[order] + rng.uniform(-0.5, 0.5, len(order)) - grey.shape[1] / 2
    ys = ys[order] + rng.uniform(-0.5, 0.5, len(order)) - grey.shape[0] / 2
    xs, ys = xs.astype(np.float32), ys.astype(np.float32)
    # Coarse: a fifth of the points in 4-px bins, which widens each rule's peak to about ±0.4°
    # so a 0.25° step cannot step over it; then finer bins and steps around the best angle.
    few = slice(0, max(100, len(xs) // 5))
    best = _best_angle(xs[few], ys[few], np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 1e-9, COARSE_STEP_DEG), 4.0)
    best = _best_angle(xs, ys, best + np.arange(-0.4, 0.4 + 1e-9, 0.05), 2.0)
    fine = best + np.arange(-0.08, 0.08 + 1e-9, FINE_STEP_DEG)
    return float(_refine_peak(fine, np.array([_sharpness(xs, ys, angle) for angle in fine])))


def _best_angle(xs: np.ndarray, ys: np.ndarray, angles: np.ndarray, bin_px: float) -> float:
    return float(angles[int(np.argmax([_sharpness(xs, ys, angle, bin_px) for angle in angles]))])


def _sharpness(xs: np.ndarray, ys: np.ndarray, angle_deg: float, bin_px: float = 1.0) -> float:
    """Sum of squared row and column counts of the ink, projected at `angle_deg` into `bin_px` bins."""
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta) / bin_px, math.sin(theta) / bin_px
    rows = np.rint(ys * cos + xs * sin).astype(np.int32)  # constant along a line tilted by theta
    cols = np.rint(xs * cos - ys * sin).astype(np.int32)
    row_counts = np.bincount(rows - rows.min()).astype(np.float64)
    col_counts = np.bincount(cols - cols.min()).astype(np.float64)
    return float(row_counts @ row_counts + col_counts @ col_counts)


def _refine_peak(angles: np.ndarray, scores: np.ndarray) -> float:
    """Sub-step peak position by fitting a parabola through the best score and its neighbours."""
    index = int(np.argmax(scores))
    if 0 < index < len(scores) - 1:
        left, centre, right = scores[index - 1: index + 2]
        curvature = left - 2 * centre + right
        if curvature < 0:
            return float(angles[index] + 0.5 * (left - right) / curvature * (angles[1] - angles[0]))
    return float(angles[index])


# --- geometry ------------------------------------------------------------------------------


def rotation_matrix(shape: tuple[int, ...], skew_deg: float) -> np.ndarray:
    """2x3 affine turning the page by -skew_deg about its centre, onto a canvas that holds it all."""
    import cv2

    height, width = shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), -skew_deg, 1.0)
    new_width, new_height = _canvas_size(shape, matrix)
    matrix[0, 2] += (new_width - width) / 2
    matrix[1, 2] += (new_height - height) / 2
    return matrix


def _canvas_size(shape: tuple[int, ...], matrix: np.ndarray) -> tuple[int, int]:
    """(width, height) of the canvas that holds the whole page turned by `matrix`."""
    height, width = shape[:2]
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    return int(round(width * cos + height * sin)), int(round(width * sin + height * cos))


def warp(grey: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    import cv2

    paper = int(np.median(grey[::4, ::4]))  # fill corners with paper colour: no false edges there
    return cv2.warpAffine(grey, matrix, _canvas_size(grey.shape, matrix), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=paper)


def processed_to_original(rotation: np.ndarray, crop: BBox) -> list[list[float]]:
    """Affine from processed pixels (inside the crop of the rotated page) to original page pixels."""
    import cv2

    inverse = cv2.invertAffineTransform(rotation)  # rotated page -> original page
    shift = np.array([[1.0, 0.0, crop.x0], [0.0, 1.0, crop.y0], [0.0, 0.0, 1.0]])  # processed -> rotated
    combined = np.vstack([inverse, [0.0, 0.0, 1.0]]) @ shift
    return combined[:2].round(6).tolist()


def to_processed(result: PreprocessResult, bbox: BBox) -> BBox:
    """The processed-image box whose bounds in original page pixels are `bbox` (`to_original` undone):
    the rotated rectangle's centre maps back, and its sides solve bbox size = |rotation| · (width, height),
    the bbox less the pixel its outward rounding added (one pixel off, a cell's crop can take in a rule)."""
    matrix = np.asarray(result.to_original, dtype=np.float64)
    cos, sin = abs(matrix[0, 0]), abs(matrix[1, 0])
    centre_x, centre_y = np.linalg.solve(matrix[:, :2], [(bbox.x0 + bbox.x1) / 2 - matrix[0, 2],
                                                          (bbox.y0 + bbox.y1) / 2 - matrix[1, 2]])
    width, height = np.linalg.solve([[cos, sin], [sin, cos]], [bbox.width - 1, bbox.height - 1])
    return BBox(x0=int(round(centre_x - width / 2)), y0=int(round(centre_y - height / 2)),
                x1=int(round(centre_x + width / 2)), y1=int(round(centre_y + height / 2)))


def to_original(result: PreprocessResult, box: BBox) -> tuple[BBox, list[tuple[int, int]]]:
    """A processed-image box as its 4-corner polygon in original page pixels, and that polygon's bbox."""
    matrix = np.asarray(result.to_original, dtype=np.float64)
    corners = np.array([[box.x0, box.y0, 1], [box.x1, box.y0, 1], [box.x1, box.y1, 1], [box.x0, box.y1, 1]],
                       dtype=np.float64)
    points = corners @ matrix.T
    polygon = [(int(round(x)), int(round(y))) for x, y in points]
    width, height = result.original_size or (math.inf, math.inf)
    xs = np.clip(points[:, 0], 0, width)
    ys = np.clip(points[:, 1], 0, height)
    bbox = BBox(x0=int(math.floor(xs.min())), y0=int(math.floor(ys.min())),
                x1=int(math.ceil(xs.max())), y1=int(math.ceil(ys.max())))
    return bbox, polygon
