"""The shipped `crnn` engine: loads fast, reads synthetic census cells, keeps order, survives odd crops."""

from __future__ import annotations

import time

import numpy as np
from rapidfuzz.distance import Levenshtein
import pytest

from pipeline.recognize import get_engine
from pipeline.recognize.crnn import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="models/crnn.onnx not shipped")


@pytest.fixture(scope="module")
def cells() -> tuple[list[np.ndarray], list[str]]:
    from pipeline.htr.synthetic import font_split, synthetic_cells

    return synthetic_cells(40, font_split()["train"], seed=99)


def test_crnn_is_a_registered_engine_that_loads_within_a_second() -> None:
    get_engine("crnn")  # warm imports (onnxruntime) before timing the model load itself
    began = time.perf_counter()
    engine = get_engine("crnn", threads=1)
    assert time.perf_counter() - began < 1.0
    assert engine.name == "crnn" and engine.model


def test_crnn_reads_synthetic_cells_with_confidences(cells: tuple[list[np.ndarray], list[str]]) -> None:
    crops, texts = cells
    readings = get_engine("crnn").recognize(crops)
    assert len(readings) == len(crops)
    errors = sum(Levenshtein.distance(r.text, t) for r, t in zip(readings, texts))
    assert errors / sum(map(len, texts)) < 0.15  # training fonts, fresh texts
    for reading in readings:
        assert len(reading.char_confidences) == len(reading.text)
        assert 0.0 <= reading.confidence <= 1.0 and all(0.0 <= c <= 1.0 for c in reading.char_confidences)
    right = [r.confidence for r, t in zip(readings, texts) if r.text == t]
    wrong = [r.confidence for r, t in zip(readings, texts) if r.text != t]
    if right and wrong:  # calibrated confidence ranks right readings above wrong ones on average
        assert np.mean(right) > np.mean(wrong)


def test_crnn_batching_keeps_order_and_handles_odd_crops(cells: tuple[list[np.ndarray], list[str]]) -> None:
    crops = cells[0][:6]
    engine = get_engine("crnn")
    together = [r.text for r in engine.recognize(crops)]
    alone = [engine.recognize([crop])[0].text for crop in crops]
    # a batch pads crops to its widest: that may flip a borderline letter, never the order
    for index, text in enumerate(together):
        distances = [Levenshtein.distance(text, other) for other in alone]
        assert int(np.argmin(distances)) == index and distances[index] <= 2, (together, alone)
    odd = [np.full((1, 1), 255, np.uint8), np.zeros((0, 5), np.uint8), np.full((30, 400), 255, np.uint8),
           np.dstack([crops[0]] * 3)]
    readings = engine.recognize(odd)
    assert len(readings) == 4 and readings[2].text == "" and readings[3].text == alone[0]


def test_an_engine_named_with_its_model_reads_with_that_model(cells, tmp_path) -> None:
    """`--engine crnn:MODEL` runs a fine-tuned model; a model an engine cannot take is a usage error."""
    import shutil

    from pipeline.errors import UsageError

    for suffix in (".onnx", ".charset.json"):  # without LM and calibration beside it: greedy, uncalibrated
        shutil.copyfile(DEFAULT_MODEL.with_suffix(suffix), tmp_path / f"tuned{suffix}")
    crops = cells[0][:8]
    named = get_engine(f"crnn:{tmp_path / 'tuned.onnx'}")
    assert "+lm" not in named.model and "+lm" in get_engine("crnn").model
    assert [r.text for r in named.recognize(crops)] == [r.text for r in get_engine("crnn-greedy").recognize(crops)]
    for spec, message in ((f"crnn:{tmp_path / 'missing.onnx'}", "crnn model not found"),
                          ("tesseract:fra", "takes no model"), ("nosuch:model", "unknown engine")):
        with pytest.raises(UsageError, match=message):
            get_engine(spec)
    (tmp_path / "tuned.charset.json").unlink()
    with pytest.raises(UsageError, match="charset"):
        get_engine(f"crnn:{tmp_path / 'tuned.onnx'}")


def test_the_model_file_says_how_far_crops_are_straightened(cells, tmp_path) -> None:
    """The charset file's `deslant` (the share of each crop's lean sheared away) is how the engine reads."""
    import json
    import shutil

    from pipeline.htr.preprocess import normalize_crop

    meta = json.loads(DEFAULT_MODEL.with_suffix(".charset.json").read_text(encoding="utf-8"))
    crops = cells[0][:8]
    features = {}
    for share in (0.0, 1.0):
        shutil.copyfile(DEFAULT_MODEL, tmp_path / f"share{share}.onnx")
        (tmp_path / f"share{share}.charset.json").write_text(json.dumps(meta | {"deslant": share}), encoding="utf-8")
        engine = get_engine(f"crnn:{tmp_path / f'share{share}.onnx'}")
        assert engine.deslant == share
        features[share] = [engine.decode([crop])[0][2] for crop in crops]  # one at a time: same batch padding
        for crop, read in zip(crops, features[share]):
            image = normalize_crop(crop, engine.height, width_scale=engine.width_scale, deslant=share)
            np.testing.assert_allclose(read, engine._run([image])[0][2])
    assert not np.allclose(np.array(features[0.0]), np.array(features[1.0]))  # the shear changes what is read
