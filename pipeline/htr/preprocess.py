"""Crop normalisation shared by training and inference: grey, contrast-stretched, fixed height.

A crop of any size (dark ink on light paper) is stretched so the paper is white and the darkest ink
black, then resized to the model's input height keeping its aspect ratio and, for a model that reads
straightened writing, sheared so that its strokes lean less (or stand upright). The model reads
`1 - pixel/255` (ink high, paper and batch padding 0).
"""

from __future__ import annotations

import numpy as np

MIN_WIDTH = 8
MAX_SLANT = 1.5  # |dx/dy| of the steepest lean corrected: 45 degrees in a crop read 1.5 times wider


def to_grey(crop: np.ndarray) -> np.ndarray:
    import cv2

    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY if crop.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    return crop if crop.dtype == np.uint8 else np.clip(crop, 0, 255).astype(np.uint8)


def percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """`np.percentile(values, qs)` (linear interpolation) by one partial sort: numpy's own adds ~90 µs
    a call, which over every cell crop of a page came to ~70 ms."""
    flat = values.ravel()
    last = flat.size - 1
    positions = [q / 100 * last for q in qs]
    below = [int(position) for position in positions]
    ordered = np.partition(flat, sorted(set(below) | {min(index + 1, last) for index in below}))
    return [float(ordered[index]) + (position - index) * (float(ordered[min(index + 1, last)]) - float(ordered[index]))
            for position, index in zip(positions, below)]


def stretch_contrast(grey: np.ndarray) -> np.ndarray:
    """Map the paper (90th percentile) to 255 and the darkest ink (1st percentile) to 0."""
    low, high = percentiles(grey, (1, 90))
    if high - low < 8:  # blank or flat crop: nothing to stretch
        return np.full_like(grey, 255) if high > 127 else grey
    scaled = (grey.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def slant(grey: np.ndarray) -> float:
    """How far the writing leans (dx/dy, positive to the right): the commonest lean of its steep stroke
    edges, refined by their contrast-weighted median around it. Each hand has its own slant; the
    recogniser has seen only its training hands'."""
    import cv2

    smooth = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), max(1.0, grey.shape[0] / 60))
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    strength = np.hypot(gx, gy)
    # the strongest tenth of the edges that could be a stroke's side (leaning < 60 degrees): not paper grain
    steep = (np.abs(gx) > 0.55 * np.abs(gy)) & (strength > percentiles(strength, (90,))[0])
    if np.count_nonzero(steep) < 20:
        return 0.0
    # an edge runs along (-gy, gx): dx/dy = -gy/gx with y pointing down, so a lean to the right is gy/gx
    leans, weights = gy[steep] / gx[steep], strength[steep]
    counts, bounds = np.histogram(leans, bins=48, range=(-MAX_SLANT - 0.2, MAX_SLANT + 0.2), weights=weights)
    peak = (bounds[:-1] + bounds[1:])[np.argmax(np.convolve(counts, np.ones(5), "same"))] / 2
    near = np.abs(leans - peak) < 0.3
    leans, weights = leans[near], weights[near]
    order = np.argsort(leans)
    cumulative = np.cumsum(weights[order])
    median = leans[order][np.searchsorted(cumulative, cumulative[-1] / 2)]
    return float(np.clip(median, -MAX_SLANT, MAX_SLANT))


def upright(grey: np.ndarray, share: float = 1.0) -> np.ndarray:
    """The crop sheared by `share` of its writing's lean (1: upright; 0: the crop itself, unmeasured), wider by
    the shear, padded with paper."""
    import cv2

    lean = share * slant(grey) if share else 0.0
    if not lean:
        return grey
    height, width = grey.shape
    pad = int(np.ceil(abs(lean) * height / 2))
    # x' = x + lean * (y - centre): the top of a right-leaning stroke moves left, its foot right
    shear = np.float32([[1, lean, pad - lean * (height - 1) / 2], [0, 1, 0]])
    return cv2.warpAffine(grey, shear, (width + 2 * pad, height), flags=cv2.INTER_LINEAR, borderValue=255)


def normalize_crop(crop: np.ndarray, height: int, max_width: int = 2048, width_scale: float = 1.0,
                   deslant: float = 0.0) -> np.ndarray:
    """Grey uint8 crop of the model's `height`, aspect ratio kept (times `width_scale`), width in [8, max_width],
    then sheared by the share `deslant` of its lean towards upright (`upright`)."""
    import cv2

    grey = to_grey(crop)
    if grey.size == 0 or min(grey.shape) < 2:
        return np.full((height, MIN_WIDTH), 255, np.uint8)
    grey = stretch_contrast(grey)
    width = int(round(grey.shape[1] * height * width_scale / grey.shape[0]))
    width = min(max(width, MIN_WIDTH), max_width)
    interpolation = cv2.INTER_AREA if grey.shape[0] > height else cv2.INTER_LINEAR
    resized = cv2.resize(grey, (width, height), interpolation=interpolation)
    return upright(resized, deslant)
