"""Recognition benchmark of an engine: model load time and cells per second on N worker processes.

Cells are synthetic census cells (held-out fonts, fixed seed), so the figure is reproducible without
real data. Each worker builds its own engine with one ONNX Runtime thread, as `census run` does.
Prints one JSON object on stdout: `{"engine", "cells", "workers", "load_s", "cells_per_s", "cells_per_cpu_s",
"cells_per_s_dedicated", "cpu_count"}` (the last figures from worker CPU time, for shared machines).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

_ENGINE = None


def _init_worker(engine_name: str) -> None:
    global _ENGINE
    from pipeline.recognize import get_engine

    _ENGINE = get_engine(engine_name)
    _ENGINE.recognize([np.full((40, 120), 255, np.uint8)])  # warm-up outside the timed part


def _recognize(crops: list[np.ndarray]) -> tuple[int, float]:
    """Cells read and the worker's CPU seconds spent (on a shared machine, wall time overstates cost)."""
    assert _ENGINE is not None
    began = time.process_time()
    return len(_ENGINE.recognize(crops)), time.process_time() - began


def measure_load(engine_name: str) -> float:
    from pipeline.recognize import get_engine

    began = time.perf_counter()
    get_engine(engine_name)
    return time.perf_counter() - began


def bench(engine_name: str = "crnn", cells: int = 2000, workers: int = 2, chunk: int = 100) -> dict:
    from pipeline.htr.synthetic import font_split, synthetic_cells

    crops, _ = synthetic_cells(cells, font_split()["test"], seed=4242)
    load_s = measure_load(engine_name)
    chunks = [crops[i:i + chunk] for i in range(0, len(crops), chunk)]
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(engine_name,)) as pool:
        list(pool.map(_recognize, chunks[:workers]))  # every worker started and warm
        began = time.perf_counter()
        results = list(pool.map(_recognize, chunks))
        seconds = time.perf_counter() - began
    done, cpu_seconds = sum(r[0] for r in results), sum(r[1] for r in results)
    # cells_per_s_dedicated: what `workers` uncontended cores would do, from CPU time actually spent
    return {"engine": engine_name, "cells": done, "workers": workers, "load_s": round(load_s, 3),
            "cells_per_s": round(done / seconds, 1), "cells_per_cpu_s": round(done / cpu_seconds, 1),
            "cells_per_s_dedicated": round(workers * done / cpu_seconds, 1), "cpu_count": os.cpu_count()}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="crnn")
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(bench(args.engine, args.cells, args.workers)))


if __name__ == "__main__":
    main()
