"""The CRNN-CTC recogniser: a small conv stack, a BiLSTM over the width, a per-frame softmax.

Input `N x 1 x H x W` floats with ink high (`1 - grey/255`), padding 0; output `N x T x C` log-probs
with `T = W / 4` frames and class 0 the CTC blank. The architecture is described by `ModelConfig`
so the training config YAML, the checkpoint and the ONNX export agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

WIDTH_STRIDE = 4  # two 2x2 poolings along the width


@dataclass
class ModelConfig:
    height: int = 40
    channels: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    hidden: int = 160
    lstm_layers: int = 2
    dropout: float = 0.25
    width_scale: float = 1.0  # horizontal stretch of the input: more CTC frames per (small, cursive) letter
    deslant: float = 0.0  # share of each crop's lean sheared away before the model sees it (1: upright; `upright`)

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(config: ModelConfig, num_classes: int):  # -> torch.nn.Module
    import torch
    from torch import nn

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    c1, c2, c3, c4 = config.channels

    class CRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # width is pooled twice (stride 4 frames), height three times (H/8 rows left)
            self.features = nn.Sequential(
                *conv(1, c1), nn.MaxPool2d(2),
                *conv(c1, c2), nn.MaxPool2d(2),
                *conv(c2, c3), *conv(c3, c3), nn.MaxPool2d((2, 1)),
                *conv(c3, c4),
            )
            rows = config.height // 8
            self.project = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(c4 * rows, config.hidden * 2), nn.ReLU())
            self.lstm = nn.LSTM(config.hidden * 2, config.hidden, num_layers=config.lstm_layers,
                                bidirectional=True, batch_first=True, dropout=config.dropout)
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.hidden * 2, num_classes))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            features = self.features(images)  # N x C x H/8 x W/4
            n, c, h, w = features.shape
            frames = features.permute(0, 3, 1, 2).reshape(n, w, c * h)
            frames, _ = self.lstm(self.project(frames))
            return self.head(frames).log_softmax(-1)

    return CRNN()


def collapse_path(path: np.ndarray, scores: np.ndarray) -> tuple[list[int], list[int]]:
    """CTC collapse of one per-frame label path: its labels, and the frame where each label peaks in `scores` (`T x C`)."""
    labels, frames, previous = [], [], 0
    for t, label in enumerate(path.tolist()):
        if label != 0 and label != previous:
            labels.append(label)
            frames.append(t)
        elif label != 0 and scores[t, label] > scores[frames[-1], label]:
            frames[-1] = t  # same run of this label: keep its most confident frame
        previous = label
    return labels, frames


def greedy_decode(log_probs: np.ndarray, lengths: np.ndarray | None = None) -> list[tuple[list[int], list[int]]]:
    """Best-path CTC decoding of `N x T x C` scores: per sequence, (labels, the frame where each label peaks)."""
    ends = lengths if lengths is not None else [log_probs.shape[1]] * len(log_probs)
    return [collapse_path(scores[:end].argmax(-1), scores[:end]) for scores, end in zip(log_probs, ends)]
