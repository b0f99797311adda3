"""Export a training checkpoint to the files the `crnn` engine loads: `<name>.onnx` and `<name>.charset.json`.

The ONNX graph takes `images` (`N x 1 x H x W`, dynamic N and W) and returns `log_probs`
(`N x W/4 x C`), computed in int8 (see `quantize_int8`). The charset file also
records the input height, width stretch (the recipe's `read_width_scale` when it sets one), the share of
each crop's lean it straightens (`deslant`; the recipe's `read_deslant` when it sets one) and the stride,
so the engine normalises crops as the recipe says. A slimmed `<name>.pt` (weights only, no optimizer)
is kept beside them for fine-tuning (`census train --from-corrections`).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline.htr.model import WIDTH_STRIDE, ModelConfig, build_model


def load_checkpoint(path: Path):  # -> (torch.nn.Module, ModelConfig, charset, payload)
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=False)
    config = ModelConfig(**payload["model_config"])
    model = build_model(config, len(payload["charset"]) + 1)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), config, payload["charset"], payload


@contextmanager
def _without_quantizer_advice():
    """ONNX Runtime's quantiser logs advice that does not apply here (BatchNorm is already folded into the
    convolutions by the exporter; the dynamic pass quantises the static pass's graph on purpose)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


CALIBRATION_CELLS = 200  # synthetic cells in the training fonts whose activations set the int8 ranges


def quantize_int8(onnx_path: Path, height: int, width_scale: float, deslant: float = 0.0) -> None:
    """Int8 inference: convolutions quantised statically (activation ranges measured on synthetic cells in the
    training fonts, per-channel weights), LSTM and linear layers dynamically.

    Measured on the stage-5 model read x1.5, one thread: the forward pass 4.7 -> 2.8 ms a cell; greedy CER
    unchanged (validation lines: LECTAUREP 9.99 -> 10.04%, poilus 17.5 -> 17.5%; held-out font Kristi
    25.3 -> 25.0%). Dynamic quantisation of the convolutions (ConvInteger) had made ONNX Runtime 3x slower.
    `reduce_range` (7-bit weights) avoids the saturation that int8 products can hit on CPUs without VNNI,
    at no measured cost here."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    from pipeline.htr.preprocess import normalize_crop
    from pipeline.htr.synthetic import font_split, synthetic_cells

    crops, _ = synthetic_cells(CALIBRATION_CELLS, font_split()["train"], seed=0)
    batches = iter([{"images": 1.0 - normalize_crop(crop, height, width_scale=width_scale, deslant=deslant)[None, None] / np.float32(255)}
                    for crop in crops])

    class Cells(CalibrationDataReader):
        def get_next(self) -> dict | None:
            return next(batches, None)

    fp32, convolutions = onnx_path.with_suffix(".fp32.onnx"), onnx_path.with_suffix(".conv8.onnx")
    onnx_path.replace(fp32)
    with _without_quantizer_advice():
        quantize_static(str(fp32), str(convolutions), Cells(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        quantize_dynamic(str(convolutions), str(onnx_path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "LSTM", "Gemm"])
    fp32.unlink()
    convolutions.unlink()


def export_onnx(checkpoint: Path, onnx_path: Path, version: str = "", quantize: bool = True) -> Path:
    """Write `onnx_path`, its `.charset.json` and a weights-only `.pt` beside it; return `onnx_path`."""
    import torch

    model, config, charset, payload = load_checkpoint(checkpoint)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, config.height, config.height * 4)
    torch.onnx.export(model, (example,), str(onnx_path), input_names=["images"], output_names=["log_probs"],
                      dynamic_axes={"images": {0: "batch", 3: "width"}, "log_probs": {0: "batch", 1: "frames"}},
                      opset_version=17, dynamo=False)
    width_scale = payload.get("read_width_scale") or config.width_scale  # the recipe may read wider than it trained
    deslant = config.deslant if payload.get("read_deslant") is None else payload["read_deslant"]  # or straighter
    if quantize:
        quantize_int8(onnx_path, config.height, width_scale, deslant)
    meta = {"charset": charset, "height": config.height, "width_scale": width_scale, "deslant": deslant,
            "width_stride": WIDTH_STRIDE, "version": version or onnx_path.stem, "model": config.to_dict()}
    onnx_path.with_suffix(".charset.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    # half-precision weights: half the size in git, and fine-tuning starts from them in fp32 anyway
    weights = {key: value.half() if value.is_floating_point() else value for key, value in payload["state_dict"].items()}
    slim = {"model_config": payload["model_config"], "read_width_scale": payload.get("read_width_scale"),
            "read_deslant": payload.get("read_deslant"),
            "charset": charset, "state_dict": weights,
            "optimizer": None, "state": {"history": payload.get("state", {}).get("history", [])}}
    torch.save(slim, onnx_path.with_suffix(".pt"))
    return onnx_path
