"""The `crnn` engine: the project's own CRNN-CTC handwriting recogniser, run with ONNX Runtime on the CPU.

Loads `models/<name>.onnx` and `models/<name>.charset.json` (charset, input height, width stretch),
and `models/<name>.calibration.json` and `models/<name>.lm.tsv.gz` when present. Crops are normalised
(grey, contrast-stretched, fixed height), sorted by width and batched so padding stays small. Decoding
is a CTC beam search with the character language model (`pipeline.htr.lm`), or greedy without one
(and in the `crnn-greedy` engine, kept for comparison). Each character's confidence is the peak
softmax probability of its frames; the sequence confidence is the calibrated probability that the
whole text is exactly right (`pipeline.htr.calibrate`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import UsageError
from pipeline.models import Reading
from pipeline.recognize import register

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL = MODELS_DIR / "crnn.onnx"
BLANK_LEVEL = 200  # a normalised crop whose darkest pixel is lighter than this holds no ink
BLANK_FEATURES = np.array([0.0, 0.0, 0.0])  # log-probability 0: certain (an empty cell is empty)
MAX_BATCH_WIDTH = 4096  # summed padded width per batch: bounds memory, keeps batches of short cells large
MAX_PADDING = 1.25  # widest crop of a batch / its narrowest


class CrnnEngine:
    name = "crnn"

    def __init__(self, model_path: Path, threads: int = 1, language_model: bool = True, calibrated: bool = True) -> None:
        import onnxruntime as ort

        from pipeline.htr.confidence import Calibration
        from pipeline.htr.lm import LmDecoder, NgramLM

        if not model_path.exists():
            raise UsageError(f"crnn model not found: {model_path}")
        if not model_path.with_suffix(".charset.json").exists():
            raise UsageError(f"{model_path}: no {model_path.with_suffix('.charset.json').name} beside it (its charset)")
        meta = json.loads(model_path.with_suffix(".charset.json").read_text(encoding="utf-8"))
        self.charset: list[str] = meta["charset"]
        self.height: int = int(meta["height"])
        self.width_scale: float = float(meta.get("width_scale", 1.0))
        self.deslant: float = float(meta.get("deslant", 0.0))  # share of each crop's lean straightened
        self.stride: int = int(meta.get("width_stride", 4))
        self.model = meta.get("version", model_path.stem)
        # `census calibrate` reads uncalibrated: the file it replaces may be from an older model
        self.calibration = Calibration.load(model_path.with_suffix(".calibration.json")) if calibrated else Calibration()
        lm_path = model_path.with_suffix(".lm.tsv.gz")
        self.decoder = LmDecoder(NgramLM.load(lm_path), self.charset) if language_model and lm_path.exists() else None
        if self.decoder:
            self.model += f"+lm{self.decoder.lm.order}"  # provenance: which decoding read the value
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one per worker process: pages run in parallel instead
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        return [Reading(text=text, confidence=self.calibration.probability(features), char_confidences=chars,
                        engine=self.name, model=self.model)
                for text, chars, features in self.decode(crops)]

    def decode(self, crops: Sequence[np.ndarray]) -> list[tuple[str, list[float], np.ndarray]]:
        """Per crop: greedy text, per-character confidences, and the sequence features calibration uses."""
        from pipeline.htr.preprocess import normalize_crop

        images = [normalize_crop(crop, self.height, width_scale=self.width_scale, deslant=self.deslant) for crop in crops]
        # no ink at all (flat crop, stretched to white): nothing is written, and the model never saw blanks
        results: list = [("", [], BLANK_FEATURES) if image.min() > BLANK_LEVEL else None for image in images]
        inked = [i for i, result in enumerate(results) if result is None]
        for batch in self._batches([images[i] for i in inked]):
            batch = [inked[i] for i in batch]
            for index, result in zip(batch, self._run([images[i] for i in batch])):
                results[index] = result
        return results

    def log_probs(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Frame log-probabilities of normalised images (one padded batch) and each one's frame count."""
        widths = np.array([image.shape[1] for image in images])
        total = int(np.ceil(widths.max() / self.stride) * self.stride)
        batch = np.zeros((len(images), 1, self.height, total), np.float32)
        for i, image in enumerate(images):
            batch[i, 0, :, : image.shape[1]] = 1.0 - image.astype(np.float32) / 255.0
        (log_probs,) = self.session.run(None, {"images": batch})
        return log_probs, np.maximum(widths // self.stride, 1)

    def _batches(self, images: list[np.ndarray]) -> list[list[int]]:
        order = sorted(range(len(images)), key=lambda i: images[i].shape[1])
        batches: list[list[int]] = []
        for index in order:
            width = images[index].shape[1]
            narrowest = images[batches[-1][0]].shape[1] if batches else 0
            # little padding, as in training: a long blank tail shifts the backward LSTM's reading
            if batches and (len(batches[-1]) + 1) * width <= MAX_BATCH_WIDTH and width <= MAX_PADDING * narrowest + 16:
                batches[-1].append(index)
            else:
                batches.append([index])
        return batches

    def _paths(self, log_probs: np.ndarray, lengths: np.ndarray) -> list[tuple[list[int], list[int], float | None]]:
        """Per sequence: labels, the frame where each peaks, and the log-probability of the text (None: greedy)."""
        from pipeline.htr.model import greedy_decode

        if self.decoder is None:
            return [(labels, frames, None) for labels, frames in greedy_decode(log_probs, lengths)]
        return [self.decoder.decode(scores[:end]) for scores, end in zip(log_probs, lengths)]

    def _run(self, images: list[np.ndarray]) -> list[tuple[str, list[float], np.ndarray]]:
        from pipeline.htr.confidence import sequence_features

        log_probs, lengths = self.log_probs(images)
        results = []
        for i, (labels, frames, text_log_prob) in enumerate(self._paths(log_probs, lengths)):
            sequence = log_probs[i, : lengths[i]]
            text = "".join(self.charset[label - 1] for label in labels)
            char_confidences = [float(np.exp(sequence[frame, label])) for label, frame in zip(labels, frames)]
            results.append((text, char_confidences, sequence_features(sequence, labels, frames, text_log_prob)))
        return results


@register("crnn")
def make_crnn_engine(model: str | None = None, threads: int = 1) -> CrnnEngine:
    """`model`: an ONNX file with its `.charset.json` beside it (default: the shipped one)."""
    return CrnnEngine(Path(model) if model else DEFAULT_MODEL, threads)


@register("crnn-greedy")
def make_crnn_greedy_engine(model: str | None = None, threads: int = 1) -> CrnnEngine:
    """The same model decoded greedily, without the language model: for side-by-side evaluation."""
    return CrnnEngine(Path(model) if model else DEFAULT_MODEL, threads, language_model=False)
