"""The character n-gram LM and the CTC beam search that uses it (`pipeline.htr.lm`)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.errors import UsageError
from pipeline.htr.lm import BOS, EOS, LmDecoder, NgramLM, build_lm, frames_to_keep
from pipeline.htr.model import collapse_path, greedy_decode
from pipeline.recognize.crnn import DEFAULT_MODEL
from tests.test_htr import shipped_model_copy, write_gt_page

TEXTS = ["Rosa Serra", "Rosa Puig", "Maria Rosa", "casada", "Roser", "vidua", "soltera", "Rosa", "12 maig 1890"]
CHARSET = sorted(set("".join(TEXTS)) | set(",.-0123456789bnX"))  # every character of the texts, and some unseen


@pytest.fixture(scope="module")
def lm() -> NgramLM:
    return build_lm(TEXTS, CHARSET, order=5)


@pytest.mark.parametrize("context", [BOS, BOS + "Ro", "Rosa S", "zzzz", "", "ia R"])
def test_kneser_ney_is_a_distribution_after_any_context(lm: NgramLM, context: str) -> None:
    vocabulary = CHARSET + [EOS]
    total = sum(math.exp(lm.score(context, char)) for char in vocabulary)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_seen_spellings_score_above_misreadings(lm: NgramLM) -> None:
    assert lm.text_logprob("Rosa") > lm.text_logprob("Rasa") + 2
    assert lm.text_logprob("casada") > lm.text_logprob("casaba")


def test_lm_survives_save_and_load_and_refuses_other_files(lm: NgramLM, tmp_path: Path) -> None:
    path = tmp_path / "m.lm.tsv.gz"
    lm.save(path)
    loaded = NgramLM.load(path)
    assert (loaded.order, loaded.weight, loaded.bonus) == (lm.order, lm.weight, lm.bonus)
    for text in ["Rosa Serra", "Xavier", "casada 1890"]:
        assert loaded.text_logprob(text) == pytest.approx(lm.text_logprob(text), abs=1e-3)
    import gzip

    with gzip.open(tmp_path / "other.gz", "wt") as other:
        other.write('{"format": "something-else"}\n')
    with pytest.raises(UsageError, match="census lm"):
        NgramLM.load(tmp_path / "other.gz")
    with pytest.raises(UsageError):
        build_lm(["a\tb"], CHARSET)


def emissions(frames: list[dict[str, float]]) -> np.ndarray:
    """`T x C` log-probabilities: per frame, the given characters' probabilities, the rest on the blank."""
    probs = np.full((len(frames), len(CHARSET) + 1), 1e-6)
    for t, frame in enumerate(frames):
        for char, p in frame.items():
            probs[t, 0 if char == "" else CHARSET.index(char) + 1] = p
        probs[t, 0] = max(1.0 - sum(frame.values()), 1e-6)
    return np.log(probs / probs.sum(1, keepdims=True))


def text_of(path: np.ndarray, scores: np.ndarray) -> str:
    return "".join(CHARSET[label - 1] for label in collapse_path(path, scores)[0])


def test_beam_search_with_the_lm_reads_the_word_the_frames_leave_in_doubt(lm: NgramLM) -> None:
    sure = [{"R": 0.99}, {}, {"": 0.999}, {"s": 0.99}, {"a": 0.99}, {}]
    doubt = [{"o": 0.45, "a": 0.5}]
    scores = emissions(sure[:2] + doubt + sure[2:])
    greedy = text_of(scores.argmax(-1), scores)
    assert greedy == "Rasa"
    decoder = LmDecoder(lm, CHARSET)
    path, log_posterior = decoder.search(scores)
    assert text_of(path, scores) == "Rosa" and math.log(0.5) < log_posterior < 0  # "Rasa" stays in the beam
    labels, frames, confidence = decoder.decode(scores)
    assert "".join(CHARSET[label - 1] for label in labels) == "Rosa" and len(frames) == 4 and frames[1] == 2
    assert confidence == log_posterior
    certain = emissions([{"R": 0.9999}, {"a": 0.9999}, {"": 0.9999}, {"s": 0.9999}, {"a": 0.9999}])
    assert text_of(decoder.search(certain)[0], certain) == "Rasa"  # the frames win when sure
    labels, frames, confidence = decoder.decode(certain)
    assert (labels, frames) == collapse_path(certain.argmax(-1), certain) and confidence > math.log(0.99)


def test_dropping_confident_repeated_frames_keeps_the_greedy_reading() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.normal(size=(60, len(CHARSET) + 1)) * rng.choice([1.0, 12.0], size=(60, 1))
        logits[:, 0] += 3.0
        scores = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        kept = frames_to_keep(scores)
        assert kept[0] == 0
        full = greedy_decode(scores[None])[0][0]
        assert greedy_decode(scores[kept][None])[0][0] == full


def test_order_below_one_is_refused() -> None:
    with pytest.raises(UsageError):
        build_lm(TEXTS, CHARSET, order=0)


needs_model = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="models/crnn.onnx not shipped")


@needs_model
def test_census_lm_builds_the_lm_beside_a_model_and_the_engine_uses_it(tmp_path: Path) -> None:
    from pipeline.cli import app
    from pipeline.recognize.crnn import CrnnEngine

    model = shipped_model_copy(tmp_path / "model")
    gt = tmp_path / "gt"
    write_gt_page(gt, "page-a", ["Maria Serra", "jornalera", "Girona"], seed=1)
    assert CrnnEngine(model).decoder is None  # no LM yet: greedy
    result = CliRunner().invoke(app, ["lm", str(gt), "--model", str(model), "--split", "all"])
    assert result.exit_code == 0, result.output
    assert model.with_suffix(".lm.tsv.gz").exists() and '"ngrams"' in result.output
    engine = CrnnEngine(model)
    assert engine.decoder is not None and engine.model.endswith("+lm7")
    assert CrnnEngine(model, language_model=False).decoder is None
    refused = subprocess.run([sys.executable, "-m", "pipeline.cli", "lm", str(gt), "--model", str(tmp_path / "none.onnx")],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "no charset" in refused.stderr


@needs_model
def test_census_lm_learns_the_reviewers_corrections(tmp_path: Path) -> None:
    from pipeline.htr.corrections import corrected_texts
    from pipeline.run.store import connect
    from tests.test_htr_corrections import make_run_with_corrections

    model = shipped_model_copy(tmp_path / "model")

    run_dir = tmp_path / "run"
    make_run_with_corrections(run_dir)
    with connect(run_dir) as connection:  # a local surname no lexicon has
        connection.execute("INSERT INTO corrections (cell_id, new_value, new_status, corrected_at, source) "
                           "VALUES ('p:r2:c0', 'Vilaregut', 'corrected', '2026-01-03T10:00', 'test')")
        connection.commit()
    assert sorted(corrected_texts(run_dir)) == ["Rosa", "Vilaregut", "fill"]
    census = [sys.executable, "-m", "pipeline.cli", "lm"]
    refused = subprocess.run(census + ["--model", str(model)], capture_output=True, text=True)
    assert refused.returncode == 2 and "--from-corrections" in refused.stderr
    built = subprocess.run(census + ["--from-corrections", str(run_dir), "--model", str(model)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    lm = NgramLM.load(model.with_suffix(".lm.tsv.gz"))
    assert lm.text_logprob("Vilaregut") > lm.text_logprob("Vilaregat") + 1
