"""The null engine reads nothing: for testing routing and throughput without recognition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.models import Reading
from pipeline.recognize import register


class NullEngine:
    name = "null"
    model = ""

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        return [Reading(text="", confidence=0.0, engine=self.name) for _ in crops]


@register("null")
def make_null_engine() -> NullEngine:
    return NullEngine()
