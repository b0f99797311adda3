"""Orientation (part of preprocess): does the page's writing run across it, or up or down (scanned sideways)?

Handwritten words, their strokes joined, are wider than tall along the line they are written on, whatever
the hand; a register's ruled lines, which run both ways, are taken out first. The ink-weighted mean
log(width / height) of the word blobs is about +0.7 on upright (or upside-down) register pages and as much
below zero on sideways ones. Which way up is decided by preprocess, from the table's header band.
Measured on a copy about WORKING_SIDE px on its longer side, shrunk by a whole factor (the fast path of
cv2.resize): about 10 ms a page.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import PageError
from pipeline.stages.image import ink_mask

WORKING_SIDE = 1000  # px; at 800 joined words fall apart into letters and the aspect drops to ~0.2
MIN_BLOBS = 20  # fewer word blobs than this: no writing to go by (a blank page)
MIN_BLOB_AREA = 12  # px on the working copy: specks and dots say nothing of direction
# 40 synthetic pages (seed 7301) and 130 LECTAUREP pages, upright: 0.43 at least; prose (poilus wills)
# reaches down to 0.04. Below this either way the direction is not decided.
MIN_ASPECT = 0.25


def is_sideways(grey: np.ndarray) -> bool:
    """True when the writing runs up or down the page: it is turned by 90° or 270°.

    False when it runs across (upright or upside down) or when there is too little writing to tell (a
    blank page goes on, and layout reports that it holds no table). PageError('orientation-unknown') when
    there is writing but it runs neither way clearly: a guess would turn a page into garbage.
    """
    aspect = writing_aspect(grey)
    if aspect is None:
        return False
    if abs(aspect) < MIN_ASPECT:
        raise PageError("orientation-unknown",
                        f"the writing runs neither across nor down the page (word aspect {aspect:+.2f}, "
                        f"needs ±{MIN_ASPECT})")
    return aspect < 0


def writing_aspect(grey: np.ndarray) -> float | None:
    """Ink-weighted mean log(width / height) of the word blobs off the ruled lines; None when too few."""
    import cv2

    text, longest = _writing_mask(_shrunk(grey))
    _, _, stats, _ = cv2.connectedComponentsWithStats(text, connectivity=8)
    width, height, area = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_AREA]
    words = (area >= MIN_BLOB_AREA) & (width < longest) & (height < longest)
    if words.sum() < MIN_BLOBS:
        return None
    return float(np.average(np.log(width[words] / height[words]), weights=area[words]))


def _shrunk(grey: np.ndarray) -> np.ndarray:
    import cv2

    factor = max(1, round(max(grey.shape) / WORKING_SIDE))
    if factor == 1:
        return grey
    height, width = grey.shape
    return cv2.resize(grey, (width // factor, height // factor), interpolation=cv2.INTER_AREA)


def _writing_mask(small: np.ndarray) -> tuple[np.ndarray, int]:
    """Ink less the ruled lines, strokes joined into words; and the length from which a stroke is a rule."""
    import cv2

    ink = ink_mask(small).astype(np.uint8)
    longest = max(small.shape) // 20
    rules = (cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, longest), np.uint8))
             | cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((longest, 1), np.uint8)))
    # A square closing joins letters without favouring either direction.
    return cv2.morphologyEx(ink & ~rules, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)), longest
