"""The "tesseract" recognition engine: reads print (and, poorly, handwriting) in cell crops.

Starting tesseract costs ~0.3 s with three languages loaded, more than reading a cell, so
crops are stacked into one tall image (white gaps between them) and read in one call; each
word goes back to the crop its centre lies in. Confidence is tesseract's mean word
confidence mapped to [0, 1]: NOT calibrated (calibration is the recognition issue's job).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.models import Reading
from pipeline.recognize import register
from pipeline.tesseract import DEFAULT_LANG, OcrWord, join_words, ocr_words

PAD = 12  # white border around each crop, px
GAP = 40  # white rows between stacked crops, px: keeps tesseract from merging their lines
MAX_STACK_HEIGHT = 8000  # px per tesseract call; bounds memory and the damage of a timeout


def has_ink(crop: np.ndarray) -> bool:
    """Whether a grey crop holds any marks darker than its paper."""
    if crop.size == 0:
        return False
    dark = crop < min(140.0, float(np.median(crop)) - 40.0)
    return int(dark.sum()) >= max(20, int(0.0005 * crop.size))


class TesseractEngine:
    name = "tesseract"

    def __init__(self, lang: str = DEFAULT_LANG, psm: int = 6) -> None:
        self.lang = lang
        self.psm = psm
        self.model = f"tesseract:{lang}"

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        readings = [Reading(text="", confidence=1.0, engine=self.name, model=self.model) for _ in crops]
        inked = [index for index, crop in enumerate(crops) if has_ink(crop)]
        for batch in _batches(inked, crops):
            for index, words in zip(batch, self._read_stack([crops[i] for i in batch])):
                text, confidence = join_words(words)
                readings[index] = Reading(text=text, confidence=confidence, engine=self.name,
                                          model=self.model)
        return readings

    def _read_stack(self, crops: list[np.ndarray]) -> list[list[OcrWord]]:
        canvas, bands = stack_crops(crops)
        per_crop: list[list[OcrWord]] = [[] for _ in crops]
        for word in ocr_words(canvas, lang=self.lang, psm=self.psm):
            centre = (word.y0 + word.y1) / 2
            for index, (top, bottom) in enumerate(bands):
                if top <= centre < bottom:
                    per_crop[index].append(word)
                    break
        return per_crop


def _batches(indices: list[int], crops: Sequence[np.ndarray]) -> list[list[int]]:
    batches: list[list[int]] = []
    height = MAX_STACK_HEIGHT + 1
    for index in indices:
        crop_height = crops[index].shape[0] + 2 * PAD + GAP
        if height + crop_height > MAX_STACK_HEIGHT:
            batches.append([])
            height = 0
        batches[-1].append(index)
        height += crop_height
    return batches


def stack_crops(crops: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """One white canvas holding the crops top to bottom; returns it and each crop's (top, bottom) band."""
    width = max(crop.shape[1] for crop in crops) + 2 * PAD
    height = sum(crop.shape[0] + 2 * PAD + GAP for crop in crops)
    canvas = np.full((height, width), 255, np.uint8)
    bands = []
    top = 0
    for crop in crops:
        band_height = crop.shape[0] + 2 * PAD
        canvas[top + PAD: top + PAD + crop.shape[0], PAD: PAD + crop.shape[1]] = crop
        bands.append((top - GAP // 2, top + band_height + GAP // 2))  # contiguous bands
        top += band_height + GAP
    return canvas, bands


@register("tesseract")
def make_tesseract_engine(lang: str = DEFAULT_LANG) -> TesseractEngine:
    return TesseractEngine(lang=lang)
