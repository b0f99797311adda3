"""A CRNN reading's confidence at run time: the sequence features the model's output gives
(`sequence_features`) and the fitted calibration that maps them to the probability the reading
is exactly right (`Calibration`, loaded by the `crnn` engine). Fitting it is `calibrate`'s job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, field_validator

FEATURES = 3  # sum, min, text (see `sequence_features`)
LOG_FLOOR = 1e-3  # log(-x + floor): keeps a reading with log-probability 0 finite


def sequence_features(log_probs: np.ndarray, labels: list[int], frames: list[int],
                      text_log_prob: float | None = None) -> np.ndarray:
    """[sum, min, text] for one `T x C` sequence: the decoded characters' summed and weakest
    log-probabilities, and the text's (the summed one when not given, as for a greedy reading). A
    reading with no characters uses its weakest frame instead (how sure the model is that nothing is written)."""
    if not labels:
        weakest = float(log_probs.max(axis=-1).min()) if len(log_probs) else 0.0
        return np.array([weakest, weakest, weakest if text_log_prob is None else text_log_prob])
    chars = log_probs[frames, labels]
    total = float(chars.sum())
    return np.array([total, float(chars.min()), total if text_log_prob is None else text_log_prob])


def expand(features: np.ndarray) -> np.ndarray:
    """[sum, min, text] -> those and their log(-x): lets confidence approach 1 as log-probabilities approach 0."""
    features = np.asarray(features, np.float64)
    return np.concatenate([features, np.log(-np.minimum(features, 0.0) + LOG_FLOOR)], axis=-1)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


class Calibration(BaseModel):
    """Platt scaling on sequence features; `coef is None` means uncalibrated (product of character probabilities)."""

    method: str = "platt"
    coef: list[float] | None = None
    intercept: float = 0.0

    @field_validator("coef")
    @classmethod
    def _one_weight_per_feature(cls, coef: list[float] | None) -> list[float] | None:
        if coef is not None and len(coef) != 2 * FEATURES:
            raise ValueError(f"{len(coef)} weights for {2 * FEATURES} calibration features: an older calibration file, "
                             "refit it with `census calibrate`")
        return coef

    def probability(self, features: np.ndarray) -> float:
        if self.coef is None:
            return float(np.exp(min(0.0, float(features[0]))))
        return float(sigmoid(np.dot(self.coef, expand(features)) + self.intercept))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return np.array([self.probability(row) for row in features])

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        from pydantic import ValidationError

        from pipeline.errors import UsageError

        if not path.exists():
            return cls()
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as error:
            raise UsageError(f"{path}: not a usable calibration ({error.errors()[0]['msg']})") from error

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=1))
