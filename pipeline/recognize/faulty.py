"""A fault-injecting engine for reliability tests: it kills its worker process, raises, or
stalls on chosen pages, and otherwise delegates to a real engine.

Workers are separate processes (a process pool or Dask workers), so it is configured by
environment variables, which those processes inherit:

- CENSUS_FAULTY_MODE   crash (SIGKILL its own process, like the OOM killer), raise
                       (an exception inside the engine) or sleep (stall); default crash
- CENSUS_FAULTY_MATCH  glob on the input file's name selecting the faulty pages; default *
- CENSUS_FAULTY_TIMES  misbehave only on the first N attempts at each page (0: always);
                       needs CENSUS_FAULTY_STATE, a folder where attempts are counted
- CENSUS_FAULTY_SLEEP  seconds to stall in sleep mode; default 5
- CENSUS_FAULTY_BASE   the engine doing the actual reading; default null
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from pipeline.errors import UsageError
from pipeline.models import Reading
from pipeline.recognize import Engine, get_engine, register

MODES = ("crash", "raise", "sleep")


class FaultyEngine:
    name = "faulty"

    def __init__(
        self, base: Engine, mode: str, match: str, times: int, state: Path | None, sleep_s: float
    ) -> None:
        self.base, self.mode, self.match, self.times, self.state, self.sleep_s = (
            base,
            mode,
            match,
            times,
            state,
            sleep_s,
        )
        self.model = f"faulty({base.name})"

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        if self._should_misbehave():
            self._misbehave()
        return self.base.recognize(crops)

    def _should_misbehave(self) -> bool:
        from pipeline.run.runner import current_task

        task = current_task()
        if task is None or not fnmatch(task.source.name, self.match):
            return False
        if self.times == 0:
            return True
        return self._count_attempt(task.page_id) <= self.times

    def _count_attempt(self, page_id: str) -> int:
        """Attempts at this page so far, this one included; kept in files so they survive the crash."""
        assert self.state is not None  # checked in the factory
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / f"{page_id}.attempts", "a+") as counter:
            counter.write("x")
            counter.flush()
            os.fsync(counter.fileno())
            counter.seek(0)
            return len(counter.read())

    def _misbehave(self) -> None:
        if self.mode == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "raise":
            raise RuntimeError("fault injected by the faulty engine")
        time.sleep(self.sleep_s)


@register("faulty")
def make_faulty_engine() -> FaultyEngine:
    mode = os.environ.get("CENSUS_FAULTY_MODE", "crash")
    if mode not in MODES:
        raise UsageError(f"CENSUS_FAULTY_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    times = int(os.environ.get("CENSUS_FAULTY_TIMES", "0"))
    state = os.environ.get("CENSUS_FAULTY_STATE")
    if times and not state:
        raise UsageError("CENSUS_FAULTY_TIMES needs CENSUS_FAULTY_STATE (a folder to count attempts in)")
    return FaultyEngine(
        base=get_engine(os.environ.get("CENSUS_FAULTY_BASE", "null")),
        mode=mode,
        match=os.environ.get("CENSUS_FAULTY_MATCH", "*"),
        times=times,
        state=Path(state) if state else None,
        sleep_s=float(os.environ.get("CENSUS_FAULTY_SLEEP", "5")),
    )
