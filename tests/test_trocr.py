"""The trocr engine runs a VisionEncoderDecoder checkpoint offline: a tiny random model saved to a temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import UsageError
from pipeline.recognize import get_engine

CHARS = "abcdefghijklmnopqrstuvwxyz "


def save_tiny_trocr(folder: Path) -> None:
    """A randomly initialised ViT encoder + TrOCR decoder, char-level tokenizer and image processor."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, TrOCRConfig, ViTConfig, ViTImageProcessor,
                              VisionEncoderDecoderConfig, VisionEncoderDecoderModel)

    torch.manual_seed(0)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {c: i + 4 for i, c in enumerate(CHARS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    encoder = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        image_size=32, patch_size=8)
    decoder = TrOCRConfig(vocab_size=len(vocab), d_model=32, decoder_layers=1, decoder_attention_heads=2,
                          decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                          eos_token_id=2, decoder_start_token_id=1)
    model = VisionEncoderDecoderModel(config=VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder))
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
    model.generation_config.decoder_start_token_id = 1
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-trocr")
    save_tiny_trocr(folder)
    return folder


def test_trocr_reads_with_token_confidences(tiny_model: Path) -> None:
    engine = get_engine("trocr", model=str(tiny_model), device="cpu", batch_size=2)
    crops = [np.full((40, 120), 255, np.uint8), np.random.default_rng(0).integers(0, 255, (30, 90, 3), np.uint8),
             np.full((20, 60), 30, np.uint8)]
    readings = engine.recognize(crops)
    assert len(readings) == 3
    for reading in readings:
        assert reading.engine == "trocr" and reading.model == str(tiny_model)
        assert set(reading.text) <= set(CHARS)
        assert len(reading.char_confidences) == len(reading.text)
        assert all(0.0 <= c <= 1.0 for c in reading.char_confidences)
        assert 0.0 <= reading.confidence <= 1.0
        if reading.text:  # sequence probability: the product of token probabilities, below each one
            assert reading.confidence <= min(reading.char_confidences) + 1e-9


def test_trocr_missing_model_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        get_engine("trocr", model=str(tmp_path / "nothing-here"), device="cpu")
