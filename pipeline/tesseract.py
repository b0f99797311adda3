"""The one place that runs the tesseract binary (through pytesseract), with a timeout.

Tesseract reads print well (register headers, preprinted numbers). Every call runs with
OMP_THREAD_LIMIT=1 so a worker process uses one core, and a missing binary or a call that
runs past its timeout becomes a `ServiceError` (exit code 4), not a crash.
"""

from __future__ import annotations

import os

import numpy as np
from pydantic import BaseModel

from pipeline.errors import ServiceError

DEFAULT_LANG = "cat+spa+fra"
DEFAULT_TIMEOUT_S = 60.0


class OcrWord(BaseModel):
    """One word tesseract found, in the pixels of the image it was given."""

    text: str
    confidence: float  # tesseract's word confidence mapped to [0, 1]; not calibrated
    x0: int
    y0: int
    x1: int
    y1: int
    line: tuple[int, int, int]  # (block, paragraph, line) numbers: words of one text line share it


def ocr_words(image: np.ndarray, lang: str = DEFAULT_LANG, psm: int = 6,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> list[OcrWord]:
    """Words in a grey uint8 image (dark ink on light paper), in tesseract's reading order."""
    import pytesseract

    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # inherited by the tesseract subprocess
    try:
        data = pytesseract.image_to_data(image, lang=lang, config=f"--psm {psm}",
                                         output_type=pytesseract.Output.DICT, timeout=timeout_s)
    except pytesseract.TesseractNotFoundError as error:
        raise ServiceError(
            "tesseract is not installed or not on PATH (apt-get install tesseract-ocr)") from error
    except RuntimeError as error:  # pytesseract signals its timeout this way
        raise ServiceError(f"tesseract did not answer within {timeout_s:.0f} s: {error}") from error
    except pytesseract.TesseractError as error:
        raise ServiceError(f"tesseract failed: {error}") from error
    return _words_from_data(data)


def _words_from_data(data: dict[str, list]) -> list[OcrWord]:
    words = []
    for index, text in enumerate(data["text"]):
        confidence = float(data["conf"][index])
        if confidence < 0 or not str(text).strip():
            continue  # layout rows (page, block, line) carry conf -1 and no text
        left, top = int(data["left"][index]), int(data["top"][index])
        words.append(OcrWord(
            text=str(text).strip(), confidence=min(1.0, confidence / 100.0),
            x0=left, y0=top, x1=left + int(data["width"][index]), y1=top + int(data["height"][index]),
            line=(int(data["block_num"][index]), int(data["par_num"][index]), int(data["line_num"][index]))))
    return words


def join_words(words: list[OcrWord]) -> tuple[str, float]:
    """Text of words (one line per tesseract line) and their mean confidence; ('', 0.0) if none."""
    if not words:
        return "", 0.0
    lines: dict[tuple[int, int, int], list[str]] = {}
    for word in words:
        lines.setdefault(word.line, []).append(word.text)
    text = "\n".join(" ".join(line) for line in lines.values())
    return text, float(np.mean([word.confidence for word in words]))


def ocr_line(image: np.ndarray, lang: str = DEFAULT_LANG, psm: int = 7,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[str, float]:
    """Read one line (psm 7) or block: text plus mean word confidence in [0, 1]."""
    return join_words(ocr_words(image, lang=lang, psm=psm, timeout_s=timeout_s))
