"""Orientation (part of preprocess): does the page's writing run across it, or up or down (scanned sideways)?

Handwritten words, their strokes joined, are wider than tall along the line they are written on, whatever
the hand; a register's ruled lines, which run both ways, are taken out first. The ink-weighted mean
log(width / height) of the word blobs is about +0.7 on upright (or upside-down) register pages and as much
below zero on sideways ones. Which way up is decided by preprocess, from the table's header band, or
when its ruling says nothing, from where the ink sits in the words (`writing_way_up`).
Measured on a copy about WORKING_SIDE px on its longer side, shrunk by a whole factor (the fast path of
cv2.resize): about 10 ms a page.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from pipeline.stages.image import ink_mask

WORKING_SIDE = 1000  # px; at 800 joined words fall apart into letters and the aspect drops to ~0.2
MIN_BLOBS = 20  # fewer word blobs than this: no writing to go by (a blank page)
MIN_BLOB_AREA = 12  # px on the working copy: specks and dots say nothing of direction
# Upright synthetic pages (120, two templates) measure +0.23 at least, real LECTAUREP and poilus pages down
# to -0.20 (prose with loose letters); turned ones the opposite. Only writing clearly running down the page
# (at or below -MIN_ASPECT) turns it: weakly directed writing goes on upright, as a page did before this
# stage existed, and if that is wrong layout says it found no table.
MIN_ASPECT = 0.25
MIN_WORD_HEIGHT = 8  # px on the working copy: in shorter blobs a pixel's rounding outweighs the ascenders
MIN_DROP = 0.005  # below this the words' ink says neither way up (1 of the 210 pages above)


def is_sideways(grey: np.ndarray) -> bool:
    """True when the writing clearly runs up or down the page: it is turned by 90° or 270°.

    False when it runs across (upright or upside down), runs no clear way, or when there is too little
    writing to tell (a blank page goes on, and layout reports that it holds no table).
    """
    aspect = writing_aspect(grey)
    return aspect is not None and aspect <= -MIN_ASPECT


def writing_aspect(grey: np.ndarray) -> float | None:
    """Ink-weighted mean log(width / height) of the word blobs off the ruled lines; None when too few."""
    words = _word_blobs(grey)
    if words is None:
        return None
    return float(np.average(np.log(words.width / words.height), weights=words.area))


def writing_way_up(grey: np.ndarray) -> Literal["up", "down"] | None:
    """Which way up the writing of a page whose lines run across it stands, when it clearly says so.

    Latin script has more ascenders and capitals than descenders, so a word's ink sits low in its box:
    the ink-weighted mean offset of the words' ink centroids below their boxes' middles, in box heights,
    is positive upright (+0.0016 at least on 80 synthetic and 130 LECTAUREP register pages, most above
    +0.014) and exactly opposite upside down. A weak cue, for tables whose ruling says nothing.
    """
    words = _word_blobs(grey, min_height=MIN_WORD_HEIGHT)
    if words is None:
        return None
    middle = words.top + (words.height - 1) / 2
    drop = float(np.average((words.centroid_y - middle) / words.height, weights=words.area))
    if abs(drop) < MIN_DROP:
        return None
    return "up" if drop > 0 else "down"


class _Words(NamedTuple):
    top: np.ndarray
    width: np.ndarray
    height: np.ndarray
    area: np.ndarray
    centroid_y: np.ndarray


def _word_blobs(grey: np.ndarray, min_height: int = 1) -> _Words | None:
    """The word blobs off the ruled lines on the working copy; None when fewer than MIN_BLOBS."""
    import cv2

    text, longest = _writing_mask(_shrunk(grey))
    _, _, stats, centroids = cv2.connectedComponentsWithStats(text, connectivity=8)
    stats, centroids = stats[1:], centroids[1:]
    width, height, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    keep = (area >= MIN_BLOB_AREA) & (width < longest) & (height < longest) & (height >= min_height)
    if keep.sum() < MIN_BLOBS:
        return None
    return _Words(top=stats[keep, cv2.CC_STAT_TOP], width=width[keep], height=height[keep], area=area[keep],
                  centroid_y=centroids[keep, 1])


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
