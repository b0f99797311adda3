"""The tesseract wrapper and the "tesseract" engine, with the real tesseract binary."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.errors import ServiceError
from pipeline.recognize import available_engines, get_engine
from pipeline.tesseract import ocr_line, ocr_words

SERIF = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"


def _printed(text: str, width: int = 420, height: int = 52, size: int = 28) -> np.ndarray:
    image = Image.new("L", (width, height), 255)
    ImageDraw.Draw(image).text((8, 8), text, font=ImageFont.truetype(SERIF, size), fill=20)
    return np.asarray(image)


def test_ocr_line_reads_print_with_confidence() -> None:
    text, confidence = ocr_line(_printed("Estat civil"))
    assert text == "Estat civil"
    assert 0.6 < confidence <= 1.0


def test_ocr_words_gives_boxes_in_image_pixels() -> None:
    words = ocr_words(_printed("Domicili 12"), psm=7)
    assert [word.text for word in words] == ["Domicili", "12"]
    assert words[0].x0 < words[1].x0 and all(0 <= word.y0 < word.y1 <= 52 for word in words)


def test_missing_language_data_is_a_service_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    with pytest.raises(ServiceError, match="not installed"):
        ocr_line(_printed("x"))


def test_timeout_is_a_service_error() -> None:
    with pytest.raises(ServiceError, match="did not answer"):
        ocr_line(np.full((3000, 3000), 255, np.uint8), timeout_s=0.01)


def test_engine_registered_and_reads_stacked_crops_in_order() -> None:
    assert "tesseract" in available_engines()
    engine = get_engine("tesseract", lang="cat")
    texts = ["Josep Puig Serra", "filla", "", "Barcelona", "Carrer Major 12"]
    crops = [_printed(text) for text in texts]
    readings = engine.recognize(crops)
    assert [reading.text for reading in readings] == texts
    assert all(reading.engine == "tesseract" and reading.model == "tesseract:cat" for reading in readings)
    assert readings[2].confidence == 1.0  # a blank crop: surely nothing written
    assert all(0.6 < reading.confidence <= 1.0 for reading in readings)


def test_engine_reads_across_several_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.recognize import tesseract as engine_module

    texts = ["Maria", "Joan", "Pere", "Anna"]
    crops = [_printed(text, height=900) for text in texts]  # ~960 px each once padded
    assert len(engine_module._batches(list(range(4)), crops)) == 1
    monkeypatch.setattr(engine_module, "MAX_STACK_HEIGHT", 1500)
    assert len(engine_module._batches(list(range(4)), crops)) == 4
    assert [reading.text for reading in get_engine("tesseract").recognize(crops)] == texts
