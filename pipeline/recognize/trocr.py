"""The `trocr` engine: any transformers VisionEncoderDecoder checkpoint (local folder or hub name).

For users with a GPU (or patience): TrOCR-style models read a crop as an image and generate its text
token by token. Each token's confidence is its softmax probability at generation (greedy search), each
character inherits the confidence of the token that wrote it, and the reading's confidence is the
product of its tokens' probabilities (the sequence probability). transformers and torch are imported
only when the engine is built; nothing is downloaded unless `model` names a hub checkpoint that is not
cached (and the network allows it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.errors import UsageError
from pipeline.models import Reading
from pipeline.recognize import register

DEFAULT_MODEL = "microsoft/trocr-base-handwritten"


class TrocrEngine:
    name = "trocr"

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto", batch_size: int = 16,
                 max_new_tokens: int = 64) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

        self.model = model
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        try:
            self.processor = AutoImageProcessor.from_pretrained(model)
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.network = VisionEncoderDecoderModel.from_pretrained(model).to(self.device).eval()
        except OSError as error:
            raise UsageError(f"cannot load trocr model {model!r}: {error}") from error
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        readings: list[Reading] = []
        for start in range(0, len(crops), self.batch_size):
            readings += self._read_batch(list(crops[start:start + self.batch_size]))
        return readings

    def _read_batch(self, crops: list[np.ndarray]) -> list[Reading]:
        import torch

        images = [np.stack([_grey(crop)] * 3, axis=-1) for crop in crops]  # processors expect RGB
        pixels = self.processor(images=images, return_tensors="pt").pixel_values.to(self.device)
        with torch.no_grad():
            output = self.network.generate(pixels, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False,
                                           output_scores=True, return_dict_in_generate=True)
        steps = len(output.scores)
        generated = output.sequences[:, -steps:] if steps else output.sequences[:, :0]
        probabilities = torch.stack([score.float().softmax(-1) for score in output.scores], dim=1) if steps else None
        return [self._reading(generated[i], probabilities[i] if probabilities is not None else None) for i in range(len(crops))]

    def _reading(self, tokens, probabilities) -> Reading:
        special = set(self.tokenizer.all_special_ids)
        text, char_confidences, sequence = "", [], 1.0
        for step, token in enumerate(tokens.tolist()):
            if token == self.network.generation_config.eos_token_id:
                break
            if token in special:
                continue
            probability = float(probabilities[step, token])
            piece = self.tokenizer.decode([token], skip_special_tokens=True, clean_up_tokenization_spaces=False)
            text += piece
            char_confidences += [probability] * len(piece)
            sequence *= probability
        stripped = text.strip()
        lead = len(text) - len(text.lstrip())
        return Reading(text=stripped, confidence=sequence if stripped else 0.0,
                       char_confidences=char_confidences[lead:lead + len(stripped)], engine=self.name, model=self.model)


def _grey(crop: np.ndarray) -> np.ndarray:
    from pipeline.htr.preprocess import to_grey

    return to_grey(crop)


@register("trocr")
def make_trocr_engine(model: str = DEFAULT_MODEL, device: str = "auto", batch_size: int = 16) -> TrocrEngine:
    return TrocrEngine(model=model, device=device, batch_size=batch_size)
