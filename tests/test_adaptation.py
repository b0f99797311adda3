"""The adaptation measurement's continued loop (`pipeline.evaluation.adaptation.judged`): reviewers answer the
adapted model's readings page by page, its calibration is refitted on them, the pages after are routed."""

from __future__ import annotations

import numpy as np

from pipeline.evaluation.adaptation import judged
from pipeline.evaluation.evaluate_lines import LineSample
from pipeline.htr.confidence import sigmoid
from pipeline.run.recalibrate import MIN_REVIEWED, logit
from pipeline.stages.templates import load_template

TEMPLATE = load_template("padro-catala-1930")  # review threshold 0.9


def register(pages: int, accuracy, low: float = 0.5, lines: int = 30,
             seed: int = 0) -> tuple[list[LineSample], list[str], list[float]]:
    """Lines read at confidences uniform in [low, 1), each right with probability `accuracy(confidence)`."""
    rng = np.random.default_rng(seed)
    samples, readings, confidences = [], [], []
    for page in range(pages):
        for line in range(lines):
            confidence = float(rng.uniform(low, 0.999))
            samples.append(LineSample(page=f"p{page:02d}", line_id=f"l{line}", text="rue", crop=np.zeros((2, 2))))
            readings.append("rue" if rng.random() < accuracy(confidence) else "riu")
            confidences.append(confidence)
    return samples, readings, confidences


def shipped_routing(readings: list[str], confidences: list[float], skip: int) -> tuple[float, float]:
    """Share accepted at the template's threshold after the first `skip` lines, and wrong among those."""
    taken = [reading for reading, confidence in zip(readings[skip:], confidences[skip:]) if confidence >= 0.9]
    return len(taken) / len(readings[skip:]), float(np.mean([reading != "rue" for reading in taken]))


def test_an_overconfident_adapted_model_once_judged_accepts_only_what_keeps_the_promise() -> None:
    samples, readings, confidences = register(30, accuracy=lambda confidence: 0.5, low=0.8)
    result = judged(samples, readings, confidences, TEMPLATE)
    assert result["judged_pages"] == -(-MIN_REVIEWED // 30) and result["judged_lines"] >= MIN_REVIEWED
    assert result["lines"] == 900 - result["judged_lines"]
    accepted, wrong = shipped_routing(readings, confidences, result["judged_lines"])
    assert accepted > 0.3 and wrong > 0.4  # the shipped calibration would break the promise
    assert result["fitted"] and result["applied"] and result["accepted"] == 0.0  # no level keeps it


def test_a_well_read_hand_once_judged_gets_more_accepted_within_the_promise() -> None:
    samples, readings, confidences = register(30, accuracy=lambda confidence: sigmoid(4 * logit(confidence) + 2), low=0.2)
    result = judged(samples, readings, confidences, TEMPLATE)
    accepted, _ = shipped_routing(readings, confidences, result["judged_lines"])
    assert result["fitted"] and result["applied"]
    assert result["accepted"] > accepted and result["accepted_error"] <= 0.03


def test_too_few_judged_lines_accept_nothing() -> None:
    samples, readings, confidences = register(4, accuracy=lambda confidence: 1.0)
    result = judged(samples, readings, confidences, TEMPLATE)
    assert not result["fitted"] and result["applied"] and result["review_threshold"] == 1.0
    assert result["lines"] == 0 and result["accepted"] == 0.0


def test_a_hand_still_misread_accepts_nothing_though_its_few_right_readings_are_confident() -> None:
    """As on TIME US 1878 after adapting: almost every line wrong, the few right ones among the most confident.
    The fit would place a threshold on those few; its held-out check accepts too few judged lines to trust it."""
    samples, readings, confidences = register(
        30, accuracy=lambda confidence: 0.9 if confidence > 0.995 else 0.0, low=0.3, seed=1)
    result = judged(samples, readings, confidences, TEMPLATE)
    assert result["fitted"] and result["applied"] and result["review_threshold"] == 1.0
    assert result["accepted"] == 0.0
