"""Recognition engines: one small protocol, a registry by name, heavy imports kept lazy.

An engine takes grey-scale crops (uint8 numpy arrays, dark ink on light paper) and returns
one `Reading` per crop. Register a new engine with `@register("name")` on a factory; the
factory is only called (and its heavy libraries imported) when the engine is first used.
An engine is named alone (its default model) or as `NAME:MODEL`, e.g. a fine-tuned model,
`crnn:runs/train-crnn-finetune/RUN-970-cells/crnn.onnx`, or `trocr:microsoft/trocr-base-handwritten`:
MODEL goes to the factory's `model` option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from inspect import signature
from typing import Protocol

import numpy as np

from pipeline.errors import UsageError
from pipeline.models import Reading


class Engine(Protocol):
    name: str
    model: str

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]: ...


_FACTORIES: dict[str, Callable[..., Engine]] = {}
# Built-in engines live in their own modules, imported only when asked for by name.
_BUILTIN_MODULES = {
    "tesseract": "pipeline.recognize.tesseract",
    "crnn": "pipeline.recognize.crnn",
    "crnn-greedy": "pipeline.recognize.crnn",  # the same model without the language model, for comparison
    "trocr": "pipeline.recognize.trocr",
    "null": "pipeline.recognize.null",
    "faulty": "pipeline.recognize.faulty",  # fault injection for reliability tests
}


def register(name: str) -> Callable[[Callable[..., Engine]], Callable[..., Engine]]:
    def decorator(factory: Callable[..., Engine]) -> Callable[..., Engine]:
        _FACTORIES[name] = factory
        return factory

    return decorator


def available_engines() -> list[str]:
    return sorted(set(_BUILTIN_MODULES) | set(_FACTORIES))


def get_engine(spec: str, **options: object) -> Engine:
    """Build the engine `spec` names, `NAME` or `NAME:MODEL` (options go to its factory)."""
    name, _, model = spec.partition(":")
    if name not in _FACTORIES and name in _BUILTIN_MODULES:
        import_module(_BUILTIN_MODULES[name])
    if name not in _FACTORIES:
        raise UsageError(f"unknown engine {name!r}; available: {', '.join(available_engines())}")
    factory = _FACTORIES[name]
    if model:
        if "model" not in signature(factory).parameters:
            raise UsageError(f"engine {name!r} takes no model ({spec!r})")
        options["model"] = model
    return factory(**options)
