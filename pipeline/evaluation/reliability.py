"""How well confidences match accuracy: the expected calibration error (ECE, 15 equal-width bins),
the reliability diagram's bins, and the share of readings auto-accepted at a threshold with the share
wrong among them. Pure measurement over (confidence, correct) arrays: `census calibrate`
(pipeline.htr.calibrate) fits on it and `census eval` (lines) reports it.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

ECE_BINS = 15


class Reliability(BaseModel):
    """How well confidences match accuracy, and the accept threshold for a target error rate."""

    readings: int
    accuracy: float  # fraction exactly right
    ece: float
    target_error: float
    threshold: float | None  # lowest confidence to auto-accept; None when no threshold meets the target
    accepted: float  # fraction of readings auto-accepted at the threshold
    accepted_error: float  # fraction of the accepted that are wrong
    bins: list[tuple[float, float, int]]  # (mean confidence, accuracy, count) per non-empty bin


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, list[tuple[float, float, int]]]:
    edges = np.linspace(0, 1, ECE_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, ECE_BINS - 1)
    ece, bins = 0.0, []
    for b in range(ECE_BINS):
        members = which == b
        if members.any():
            mean_conf, accuracy = float(confidence[members].mean()), float(correct[members].mean())
            ece += members.mean() * abs(mean_conf - accuracy)
            bins.append((mean_conf, accuracy, int(members.sum())))
    return float(ece), bins


def accept_threshold(confidence: np.ndarray, correct: np.ndarray, target_error: float) -> tuple[float | None, float, float]:
    """Lowest threshold whose accepted readings (confidence >= threshold) are wrong at most `target_error`."""
    order = np.argsort(-confidence)
    wrong = np.cumsum(1 - correct[order])
    counts = np.arange(1, len(order) + 1)
    ok = np.flatnonzero(wrong / counts <= target_error)
    if ok.size == 0:
        return None, 0.0, 0.0
    last = int(ok[-1])
    # ties: accepting at this confidence accepts every reading with the same confidence
    threshold = float(confidence[order][last])
    accepted = confidence >= threshold
    return threshold, float(accepted.mean()), float(1 - correct[accepted].mean())


def accepted_at(confidence: np.ndarray, correct: np.ndarray, threshold: float | None) -> tuple[float, float]:
    """Fraction auto-accepted at `threshold` and the fraction of those that are wrong."""
    accepted = confidence >= threshold if threshold is not None else np.zeros(len(confidence), bool)
    return float(accepted.mean()) if len(accepted) else 0.0, float(1 - correct[accepted].mean()) if accepted.any() else 0.0


def reliability(confidence: np.ndarray, correct: np.ndarray, target_error: float,
                threshold: float | None = None, fixed: bool = False) -> Reliability:
    """Calibration report; with `fixed`, measured at the given `threshold` (chosen on other data)."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    ece, bins = expected_calibration_error(confidence, correct)
    if fixed:
        accepted, accepted_error = accepted_at(confidence, correct, threshold)
    else:
        threshold, accepted, accepted_error = accept_threshold(confidence, correct, target_error)
    return Reliability(readings=len(correct), accuracy=float(correct.mean()) if len(correct) else 0.0, ece=ece,
                       target_error=target_error, threshold=threshold, accepted=accepted,
                       accepted_error=accepted_error, bins=bins)
