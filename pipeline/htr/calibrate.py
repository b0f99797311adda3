"""Calibrated sequence confidence: the probability that a reading is exactly right.

Three features of a reading feed a logistic (Platt) model: the summed log-probability of its decoded
characters (each at its most confident frame), the weakest of them (one doubtful letter is enough
to make a cell wrong), and the log-probability of the text as a whole: its share of the language-model
beam search's final beam (`pipeline.htr.lm`; for a greedy reading, the summed log-probability again).
Each also enters as log(-x): with the raw features alone the probability of a reading the model is
certain of stays capped at sigmoid(intercept) (~0.89), so short cells were under-confident. Chosen by
measurement over best-path and frame-margin variants: lowest ECE and most readings accepted at 2%
error on held-out lines and cells; the beam share, added with the LM decoding, took the ECE on the
test lines from 0.046 to 0.028 (`census calibrate ../shared/data --check-split test`). `fit_calibration` fits it on held-out
readings (validation lines plus synthetic validation cells, so both lengths are represented);
`pipeline.evaluation.reliability` gives the expected calibration error (ECE, 15 equal-width bins), a reliability diagram,
and the lowest threshold whose auto-accepted readings stay within a target error rate. Without a
fitted calibration the product of the characters' probabilities is used as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from pipeline.evaluation.reliability import Reliability, reliability
from pipeline.htr.confidence import FEATURES, Calibration, expand, sigmoid

CALIBRATION_CELLS_SEED = 991  # synthetic validation cells (training fonts): never a training seed


def fit_calibration(features: np.ndarray, correct: np.ndarray) -> Calibration:
    """Logistic regression of exact-match correctness on the expanded features."""
    coef, intercept = fit_logistic(expand(features), correct)
    # An isotonic correction on top was tried: lower ECE on the fitting lines, none on the test lines.
    return Calibration(coef=[float(v) for v in coef], intercept=intercept)


def fit_logistic(raw: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights (in the units of `raw`'s columns) and intercept of the logistic regression of `correct`
    (1 = right) on `raw` (L-BFGS on the log loss, a light L2 penalty on the weights). Also fits a run's own
    calibration on its reviewed cells (`pipeline.run.recalibrate`)."""
    from scipy.optimize import minimize

    raw = np.asarray(raw, np.float64)
    mean, scale = raw.mean(axis=0), raw.std(axis=0) + 1e-9
    x = (raw - mean) / scale  # standardised: L-BFGS converges on features of very different ranges
    y = np.asarray(correct, np.float64)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        p = sigmoid(x @ params[:-1] + params[-1])
        eps = 1e-9
        value = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)) + 1e-4 * np.sum(params[:-1] ** 2)
        gradient = np.concatenate([x.T @ (p - y) / len(y) + 2e-4 * params[:-1], [np.mean(p - y)]])
        return value, gradient

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    coef = result.x[:-1] / scale  # back to raw feature units
    return coef, float(result.x[-1] - np.dot(coef, mean))


def plot_reliability(report: Reliability, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    if report.bins:
        conf, acc, count = zip(*report.bins)
        axis.scatter(conf, acc, s=[20 + 200 * c / max(count) for c in count], label="bins (size = readings)")
        axis.plot(conf, acc, "-o", markersize=2)
    if report.threshold is not None:
        axis.axvline(report.threshold, color="red", lw=1, label=f"accept threshold {report.threshold:.3f}")
    axis.set(xlabel="confidence", ylabel="fraction exactly right", xlim=(0, 1), ylim=(0, 1),
             title=f"{title}\nECE {report.ece:.3f}, {report.readings} readings")
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


class CalibrationReport(BaseModel):
    model: str
    calibration: Calibration
    fit: Reliability  # on what it was fitted on: lines of the fitting split plus synthetic cells
    check: Reliability | None  # on another split's lines (e.g. test), at the fit's threshold
    check_cells: Reliability | None  # on fresh synthetic cells in the held-out fonts, at the fit's threshold
    diagram: str


def _features_and_correct(engine, crops: list[np.ndarray], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.htr.text import normalize_text

    decoded = engine.decode(crops)
    features = np.array([features for _, _, features in decoded]).reshape(-1, FEATURES)
    correct = np.array([normalize_text(text) == truth for (text, _, _), truth in zip(decoded, texts)], float)
    return features, correct


def _lines(engine, gt_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.evaluation.evaluate_lines import collect_lines

    samples = collect_lines(gt_dir, None if split == "all" else split)
    return _features_and_correct(engine, [sample.crop for sample in samples], [sample.text for sample in samples])


def _cells(engine, count: int, held_out: bool) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.htr.synthetic import font_split, synthetic_cells

    fonts = font_split()["test" if held_out else "train"]
    return _features_and_correct(engine, *synthetic_cells(count, fonts, CALIBRATION_CELLS_SEED + held_out))


def calibrate_gt(gt_dir: Path, split: str = "val", check_split: str | None = None, target_error: float = 0.02,
                 model_path: Path | None = None, out_dir: Path = Path("runs/calibration"),
                 cells: int = 1500) -> CalibrationReport:
    """Fit the crnn engine's calibration on `split` lines of `gt_dir` plus `cells` synthetic cells in the
    training fonts; save it beside the model; report it (and, at the fitted threshold, on `check_split`
    lines and on as many fresh cells in the held-out fonts)."""
    from pipeline.recognize.crnn import DEFAULT_MODEL, CrnnEngine

    model_path = Path(model_path or DEFAULT_MODEL)
    engine = CrnnEngine(model_path, calibrated=False)
    parts = [_lines(engine, gt_dir, split)] + ([_cells(engine, cells, held_out=False)] if cells else [])
    features, correct = np.concatenate([f for f, _ in parts]), np.concatenate([c for _, c in parts])
    calibration = fit_calibration(features, correct)
    fit = reliability(calibration.probabilities(features), correct, target_error)

    def measured(part: tuple[np.ndarray, np.ndarray]) -> Reliability:  # at the threshold suggested on the fit
        return reliability(calibration.probabilities(part[0]), part[1], target_error, fit.threshold, fixed=True)

    check = measured(_lines(engine, gt_dir, check_split)) if check_split else None
    check_cells = measured(_cells(engine, cells, held_out=True)) if cells else None
    calibration.save(model_path.with_suffix(".calibration.json"))
    out_dir.mkdir(parents=True, exist_ok=True)
    diagram = out_dir / "reliability.png"
    plot_reliability(check or fit, diagram, f"{model_path.stem} on {gt_dir.name} ({check_split or split})")
    report = CalibrationReport(model=str(model_path), calibration=calibration, fit=fit, check=check,
                               check_cells=check_cells, diagram=str(diagram))
    (out_dir / "calibration.json").write_text(report.model_dump_json(indent=1))
    return report
