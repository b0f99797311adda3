"""Image analysis shared by the stages: ink and ruled-line masks, their projections (line
profiles) and the rule positions read from them. Imports nothing from the stages."""

from __future__ import annotations

import numpy as np


def ink_mask(grey: np.ndarray, offset: int = 15) -> np.ndarray:
    """Ink pixels (True) by local mean thresholding: robust to uneven paper; low offset keeps faint ink."""
    import cv2

    block = max(15, (min(grey.shape) // 60) | 1)
    binary = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                   block, offset)
    return binary > 0



def line_masks(grey: np.ndarray, offset: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal, vertical) masks of long thin straight strokes: ruled lines, small breaks bridged."""
    import cv2

    ink = ink_mask(grey, offset).astype(np.uint8)
    height, width = grey.shape
    gap = max(5, min(height, width) // 150)  # breaks in worn rules up to this long are bridged
    horizontal = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((1, gap), np.uint8))
    horizontal = cv2.morphologyEx(horizontal, cv2.MORPH_OPEN, np.ones((1, max(40, width // 12)), np.uint8))
    vertical = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((gap, 1), np.uint8))
    vertical = cv2.morphologyEx(vertical, cv2.MORPH_OPEN, np.ones((max(40, height // 15), 1), np.uint8))
    max_thickness = max(10, min(height, width) // 100)  # double rules close up to ~2x a rule
    return _thin_only(horizontal, 1, max_thickness), _thin_only(vertical, 0, max_thickness)



def _thin_only(mask: np.ndarray, along: int, max_thickness: int) -> np.ndarray:
    """Drop components thicker than a rule (page edges, shadows, dark borders): area / length."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    length = stats[:, cv2.CC_STAT_WIDTH] if along == 1 else stats[:, cv2.CC_STAT_HEIGHT]
    thin = stats[:, cv2.CC_STAT_AREA] <= max_thickness * np.maximum(length, 1)
    thin[0] = False  # the background label
    return thin[labels]



def rule_positions(profile: np.ndarray, min_count: float, merge_within: int) -> list[int]:
    """Centres of runs where a line-mask projection reaches `min_count`; runs closer than
    `merge_within` merge (double rules)."""
    on = np.flatnonzero(profile >= min_count)
    if len(on) == 0:
        return []
    groups = np.split(on, np.flatnonzero(np.diff(on) > merge_within) + 1)
    return [int(round(np.average(group, weights=profile[group]))) for group in groups]



def line_profile(mask: np.ndarray, axis: int, spread: int = 3) -> np.ndarray:
    """Projection of a line mask (axis=1: per row); lines widened by `spread` px so residual skew
    does not spread one rule over several weak bins."""
    import cv2

    kernel = np.ones((1, 2 * spread + 1) if axis == 0 else (2 * spread + 1, 1), np.uint8)
    return (cv2.dilate(mask.astype(np.uint8), kernel) > 0).sum(axis=axis).astype(np.float64)



def long_rules(mask: np.ndarray, axis: int, min_fraction: float = 0.5) -> list[int]:
    """Positions of rules at least `min_fraction` as long as the longest one (axis=1: horizontal rules)."""
    profile = line_profile(mask, axis)
    if profile.max(initial=0) == 0:
        return []
    merge_within = max(6, mask.shape[1 - axis] // 150)
    return rule_positions(profile, min_fraction * profile.max(), merge_within)
