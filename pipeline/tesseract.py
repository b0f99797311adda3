"""The one place that runs tesseract (in-process, through tesserocr), with a timeout.

Tesseract reads print well (register headers, preprinted numbers). Each worker process keeps one
loaded tesseract per language set, runs it with OMP_THREAD_LIMIT=1 (one core per worker), and
missing language data or a call that runs past its timeout becomes a `ServiceError` (exit code 4),
not a crash.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path

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


TESSDATA_DIRS = (Path("/usr/share/tesseract-ocr/5/tessdata"), Path("/usr/share/tesseract-ocr/4.00/tessdata"))


def tessdata_dir() -> Path:
    """The language models: $TESSDATA_PREFIX, else the Debian tesseract-ocr-* packages' folder."""
    if os.environ.get("TESSDATA_PREFIX"):
        return Path(os.environ["TESSDATA_PREFIX"])
    return next((path for path in TESSDATA_DIRS if path.is_dir()), TESSDATA_DIRS[0])


@cache
def _api(lang: str, psm: int, tessdata: Path):  # -> tesserocr.PyTessBaseAPI
    """One tesseract per (language, layout mode) and process: the models load once, not per page
    (a tesseract process per call cost ~100 ms of start-up and model loading)."""
    import tesserocr

    try:
        return tesserocr.PyTessBaseAPI(path=f"{tessdata}/", lang=lang, psm=psm)
    except RuntimeError as error:
        raise ServiceError(f"tesseract language data for {lang!r} is not installed in {tessdata} "
                           "(apt-get install tesseract-ocr-cat tesseract-ocr-spa tesseract-ocr-fra)") from error


_API_LOCK = threading.Lock()  # a tesseract instance reads one image at a time (Dask workers may use threads)


def ocr_words(image: np.ndarray, lang: str = DEFAULT_LANG, psm: int = 6,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> list[OcrWord]:
    """Words in a grey uint8 image (dark ink on light paper), in tesseract's reading order."""
    from PIL import Image

    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one core per worker process
    api = _api(lang, psm, tessdata_dir())
    with _API_LOCK:
        api.SetImage(Image.fromarray(np.ascontiguousarray(image)))
        try:
            if not api.Recognize(timeout=max(1, int(timeout_s * 1000))):
                raise ServiceError(f"tesseract did not answer within {timeout_s:.2f} s")
            return _words(api)
        finally:
            api.Clear()  # drop this image's results: the instance serves the next call


def _words(api) -> list[OcrWord]:
    from tesserocr import RIL, iterate_level

    words, block, paragraph, line = [], 0, 0, 0
    for word in iterate_level(api.GetIterator(), RIL.WORD):
        if word.IsAtBeginningOf(RIL.BLOCK):
            block, paragraph, line = block + 1, 0, 0
        if word.IsAtBeginningOf(RIL.PARA):
            paragraph, line = paragraph + 1, 0
        if word.IsAtBeginningOf(RIL.TEXTLINE):
            line += 1
        try:
            text = (word.GetUTF8Text(RIL.WORD) or "").strip()
        except RuntimeError:  # tesserocr's "No text returned": a word box without text
            continue
        confidence, box = float(word.Confidence(RIL.WORD)), word.BoundingBox(RIL.WORD)
        if not text or confidence < 0 or box is None:
            continue
        words.append(OcrWord(text=text, confidence=min(1.0, confidence / 100.0), x0=box[0], y0=box[1], x1=box[2],
                             y1=box[3], line=(block, paragraph, line)))
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
