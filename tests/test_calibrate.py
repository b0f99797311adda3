"""Confidence calibration: Platt fit, ECE, accept threshold, and `census calibrate` on a small fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.reliability import accept_threshold, expected_calibration_error, reliability
from pipeline.htr.calibrate import calibrate_gt, fit_calibration
from pipeline.htr.confidence import Calibration
from pipeline.recognize.crnn import DEFAULT_MODEL
from tests.test_htr import shipped_model_copy, write_gt_page


def test_platt_fit_recovers_a_calibrated_probability() -> None:
    rng = np.random.default_rng(0)
    features = np.column_stack([rng.normal(-3, 2, 4000), rng.normal(-1, 0.5, 4000), rng.normal(-1, 1, 4000)])
    truth = 1 / (1 + np.exp(-(0.8 * features[:, 0] + 0.5 * features[:, 1] + 0.3 * features[:, 2] + 2.0)))
    correct = (rng.random(4000) < truth).astype(float)
    calibration = fit_calibration(features, correct)
    predicted = calibration.probabilities(features)
    assert expected_calibration_error(predicted, correct)[0] < 0.03
    raw = np.exp(np.minimum(features[:, 0], 0))  # the uncalibrated sequence probability is far off
    assert expected_calibration_error(raw, correct)[0] > expected_calibration_error(predicted, correct)[0]


def test_accept_threshold_meets_the_target_error() -> None:
    confidence = np.array([0.99, 0.98, 0.97, 0.9, 0.8, 0.5, 0.4])
    correct = np.array([1, 1, 1, 1, 0, 1, 0], float)
    threshold, accepted, error = accept_threshold(confidence, correct, 0.0)
    assert threshold == 0.9 and accepted == pytest.approx(4 / 7) and error == 0.0
    assert accept_threshold(confidence, correct, 0.25)[0] == 0.5
    assert accept_threshold(np.array([0.9]), np.array([0.0]), 0.02)[0] is None
    report = reliability(confidence, correct, 0.0)
    assert report.readings == 7 and sum(count for _, _, count in report.bins) == 7
    fixed = reliability(confidence, correct, 0.0, threshold=0.8, fixed=True)  # a threshold chosen elsewhere
    assert fixed.threshold == 0.8 and fixed.accepted == pytest.approx(5 / 7) and fixed.accepted_error == pytest.approx(0.2)


def test_uncalibrated_is_the_sequence_probability(tmp_path: Path) -> None:
    assert Calibration.load(tmp_path / "absent.json").probability(np.array([np.log(0.25), -2.0, -1.0])) == pytest.approx(0.25)


def test_confidence_reaches_near_one_for_certain_readings() -> None:
    """Readings whose characters all have log-probability ~0 are right: calibrated confidence must follow
    (raw Platt features capped it at sigmoid(intercept))."""
    rng = np.random.default_rng(0)
    certain = -rng.uniform(0, 0.01, size=(400, 3))
    doubtful = -rng.uniform(0.5, 6, size=(400, 3))
    features = np.concatenate([certain, doubtful])
    correct = np.concatenate([np.ones(400), rng.random(400) < 0.4]).astype(float)
    calibration = fit_calibration(features, correct)
    assert calibration.probability(np.array([-0.001, -0.001, -0.001])) > 0.97
    assert calibration.probability(np.array([-4.0, -3.0, -2.0])) < 0.6


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="models/crnn.onnx not shipped")
def test_calibrate_on_fixture_writes_calibration_beside_model_and_diagram(tmp_path: Path) -> None:
    model = shipped_model_copy(tmp_path / "model")
    gt = tmp_path / "gt"
    texts = ["Maria Serra", "jornalera", "Girona", "fill", "casat", "34", "Josep", "ídem", "Lleida", "pagès"]
    for page in range(3):
        write_gt_page(gt, f"page-{page}", texts[page * 3:page * 3 + 4], seed=page)
    report = calibrate_gt(gt, split="all", check_split=None, target_error=0.2, model_path=model, out_dir=tmp_path / "out",
                          cells=20)
    stored = json.loads(model.with_suffix(".calibration.json").read_text())
    assert stored["coef"] == report.calibration.coef and report.fit.readings == 12 + 20  # lines + synthetic cells
    assert report.check_cells is not None and report.check_cells.readings == 20
    assert 0 <= report.fit.ece <= 1 and (tmp_path / "out" / "reliability.png").stat().st_size > 1000
    from pipeline.recognize.crnn import CrnnEngine

    assert CrnnEngine(model).calibration.coef == report.calibration.coef  # the engine applies it


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="models/crnn.onnx not shipped")
def test_calibrate_replaces_a_calibration_file_of_an_older_format(tmp_path: Path) -> None:
    model = shipped_model_copy(tmp_path)
    model.with_suffix(".calibration.json").write_text(json.dumps({"method": "platt", "coef": [1.0, 2.0], "intercept": 0.0}))
    from pipeline.errors import UsageError
    from pipeline.recognize.crnn import CrnnEngine

    with pytest.raises(UsageError, match="census calibrate"):
        CrnnEngine(model)
    gt = tmp_path / "gt"
    write_gt_page(gt, "page-0", ["Maria Serra", "jornalera", "Girona"], seed=0)
    report = calibrate_gt(gt, split="all", target_error=0.2, model_path=model, out_dir=tmp_path / "out", cells=10)
    assert CrnnEngine(model).calibration.coef == report.calibration.coef
