"""The pages of a run: plan one task per page, process a page through every stage, and run the
tasks in a local worker pool, writing each page's result atomically (`batch` drives a whole run)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field

from pipeline.errors import PageError
from pipeline.models import Cell, Failure, PageResult
from pipeline.recognize import Engine, get_engine
from pipeline.run.paths import page_image_path, page_json_path, write_atomically
from pipeline.stages.templates import Template, load_template

DEFAULT_TEMPLATE = "padro-catala-1930"
DEFAULT_ENGINE = "crnn"
PAGE_IMAGE_QUALITY = 90
MAX_ATTEMPTS = 3  # worker deaths on one page before it is quarantined


class PageTask(BaseModel):
    source: Path
    page_index: int
    page_id: str


class RunOptions(BaseModel):
    out: Path
    template: str = DEFAULT_TEMPLATE
    engine: str = DEFAULT_ENGINE
    workers: int = Field(default=2, ge=1)
    executor: Literal["local", "dask"] = "local"
    scheduler: str | None = None


# --- planning -----------------------------------------------------------------------------

class RunPlan(BaseModel):
    """What a run's inputs hold; each input file is in exactly one of `tasks` (by its pages),
    `failures`, `duplicates` or `skipped`."""

    tasks: list[PageTask] = []
    failures: list[Failure] = []  # files that cannot be read
    duplicates: list[Path] = []  # the same content as an earlier file: its pages are that file's
    skipped: list[Failure] = []  # files in a folder of a format not read (reason unsupported-format)


def plan(inputs: list[Path]) -> RunPlan:
    """One task per page of every readable input; unreadable files become failures."""
    from pipeline.stages import ingest

    found = ingest.find_inputs(inputs)
    result = RunPlan(skipped=[Failure(source=str(path), reason=ingest.UNSUPPORTED,
                                      detail=f"{path.suffix or 'no extension'} is not a format census reads")
                              for path in found.unsupported])
    first_source: dict[str, Path] = {}  # content hash -> first file with that content
    for path in found.files:
        try:
            info = ingest.probe(path)
        except PageError as error:
            result.failures.append(Failure(source=str(path), reason=error.reason, detail=error.detail))
            continue
        except Exception as error:  # a bug met by one odd file must not stop the batch
            result.failures.append(Failure(source=str(path), reason="internal-error",
                                           detail=f"{type(error).__name__}: {error}"))
            continue
        if info.sha256 in first_source:
            # Same bytes under another name: its pages are the same pages, processed once.
            print(f"skipping {path}: same content as {first_source[info.sha256]}", file=sys.stderr)
            result.duplicates.append(path)
            continue
        first_source[info.sha256] = path
        result.tasks.extend(PageTask(source=path.resolve(), page_index=index, page_id=f"{info.sha256}-p{index}")
                            for index in range(info.n_pages))
    return result


# --- one page -----------------------------------------------------------------------------

class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now


def process_page(task: PageTask, template: Template, engine: Engine, run_dir: Path) -> PageResult:
    """Every stage for one page. Raises PageError when the page cannot be read or has no table."""
    from pipeline.dataset import households
    from pipeline.stages import columns, fields, ingest, layout, preprocess, route

    clock = _Stopwatch()
    info, image = ingest.load_page(task.source, task.page_index)
    save_page_image(run_dir, info.page_id, image)
    clock.lap("ingest")
    prep, processed = preprocess.preprocess(image)
    clock.lap("preprocess")
    grid = layout.detect_grid(processed, expected_columns=len(template.columns))
    clock.lap("layout")
    mapping = columns.map_columns(processed, grid, template)
    clock.lap("columns")
    cells = recognise_cells(processed, grid, mapping.fields, prep, info.page_id, engine)
    clock.lap("recognise")
    cells, persons = fields.interpret(cells, template)
    clock.lap("fields")
    cells = route.route(cells, template)
    persons = households.assign_households(persons, template, info.page_id)
    clock.lap("route")
    return PageResult(page=info, template=template.name, preprocess=prep, grid=grid, columns=mapping,
                      cells=cells, persons=persons, timings=clock.timings)


def save_page_image(run_dir: Path, page_id: str, image: np.ndarray) -> None:
    """Keep the ingested page (original pixels) for review crops, search links and reports."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, PAGE_IMAGE_QUALITY])
    if ok:
        write_atomically(page_image_path(run_dir, page_id), encoded.tobytes())


def recognise_cells(processed: np.ndarray, grid: Any, column_fields: dict[int, str | None], prep: Any,
                    page_id: str, engine: Engine) -> list[Cell]:
    """Crop every data cell of the mapped columns, read the written ones in one batch. A cell written across
    sub-columns (`Grid.spans`) is read once, whole, into the column holding most of its writing; the others
    it covers are empty, their engine saying which column read it (`written-across:c<col>`)."""
    from pipeline.stages import cells as cell_crops
    from pipeline.stages import layout, preprocess

    n_rows = len(grid.row_bounds) - 1 - grid.header_rows
    mapped = [(col, key) for col, key in sorted(column_fields.items()) if key is not None]
    boxes, crops, blank = [], [], []
    for row in range(n_rows):
        for col, key in mapped:
            box = layout.cell_box(grid, row, col)
            span = layout.span_at(grid, row, col)
            # written across into another column, which reads it (unless that one is not mapped: this one does)
            read_with = span.col if span and span.col != col and column_fields.get(span.col) else None
            crop = cell_crops.text_crop(processed, box) if read_with is None else None
            boxes.append((row, col, key, box, read_with))
            crops.append(crop)
            blank.append(read_with is not None or cell_crops.is_blank(crop))
    written = [crop for crop, is_blank in zip(crops, blank) if not is_blank]
    readings = iter(engine.recognize(written) if written else [])
    result = []
    for (row, col, key, box, read_with), is_blank in zip(boxes, blank):
        original_box, polygon = preprocess.to_original(prep, box)
        common = dict(cell_id=f"{page_id}:r{row}:c{col}", page_id=page_id, row=row, col=col, field=key,
                      bbox=original_box, polygon=polygon)
        if is_blank:
            engine = "blank-detector" if read_with is None else f"written-across:c{read_with}"
            result.append(Cell(**common, text="", confidence=1.0, status="empty", engine=engine))
            continue
        reading = next(readings)
        result.append(Cell(**common, text=reading.text, confidence=reading.confidence,
                           status="needs_review", engine=reading.engine, model=reading.model))
    return result


# --- workers ------------------------------------------------------------------------------

_worker_state: dict[str, Any] = {}
# Workers come from a fork server, never a plain fork of this process: a fork copies the
# locks of OpenCV's (and other libraries') thread pools held at that instant, and a worker
# then hangs forever in cv2.setNumThreads (seen after the parent had drawn a report).
_WORKER_CONTEXT = multiprocessing.get_context("forkserver")
# The fork server imports pipeline.run.lifetime, which makes it end when the run dies.
_WORKER_CONTEXT.set_forkserver_preload(["pipeline.run.lifetime"])


def init_worker(template_name: str, engine_name: str, run_dir: str) -> None:
    """Load the template and engine once per worker process, one thread each."""
    from pipeline.run.lifetime import worker_dies_with_fork_server

    worker_dies_with_fork_server()  # which dies with the run, so the worker does too
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    cv2.setNumThreads(1)
    _worker_state["template"] = load_template(template_name)
    _worker_state["engine"] = get_engine(engine_name)
    _worker_state["run_dir"] = Path(run_dir)


def current_task() -> PageTask | None:
    """The page this worker process is processing (for fault-injecting test engines)."""
    return _worker_state.get("task")


def run_task(task: PageTask) -> tuple[str, str]:
    """Worker entry point: process a page and write its JSON result; returns (page_id, outcome).

    A page that cannot be processed is written as a failed PageResult with its reason, so the
    failure is recorded exactly once however often the run is resumed.
    """
    if not _worker_state:
        raise RuntimeError("init_worker was not called in this process")
    template, engine, run_dir = (_worker_state[key] for key in ("template", "engine", "run_dir"))
    _worker_state["task"] = task
    try:
        result = process_page(task, template, engine, run_dir)
    except PageError as error:
        result = failed_result(task, template, error.reason, error.detail)
    except Exception as error:  # a bad page never stops the batch
        result = failed_result(task, template, "internal-error", f"{type(error).__name__}: {error}")
    write_atomically(page_json_path(run_dir, task.page_id), result.model_dump_json().encode())
    return task.page_id, result.status


def failed_result(task: PageTask, template: Template, reason: str, detail: str) -> PageResult:
    from pipeline.models import PageInfo

    page = PageInfo(page_id=task.page_id, source=str(task.source), page_index=task.page_index, width=0, height=0)
    return PageResult(page=page, template=template.name, status="failed",
                      error=f"{reason}: {detail}" if detail else reason)


def execute_local(tasks: list[PageTask], options: RunOptions) -> Iterator[str]:
    """Run tasks in a local process pool; yield page ids as they finish.

    A page whose worker process dies (segfault, OOM kill) is retried alone in a fresh
    one-process pool, so the crash is attributed to the right page; after MAX_ATTEMPTS
    deaths it is quarantined as a failed page with reason "worker-crashed".
    """
    from pipeline.run.lifetime import watch_run

    watch_run()
    initargs = (options.template, options.engine, str(options.out))
    attempts: dict[str, int] = {}
    queue: deque[PageTask] = deque(tasks)
    suspects: deque[PageTask] = deque()
    while queue or suspects:
        if suspects:
            yield from _run_alone(suspects.popleft(), initargs, attempts, suspects)
        else:
            yield from _run_pooled(queue, options.workers, initargs, attempts, suspects)


def _run_pooled(queue: deque[PageTask], workers: int, initargs: tuple[str, str, str],
                attempts: dict[str, int], suspects: deque[PageTask]) -> Iterator[str]:
    """Drain `queue` through a pool; if the pool breaks, move the pages in flight to `suspects`."""
    with ProcessPoolExecutor(max_workers=workers, initializer=init_worker, initargs=initargs,
                             mp_context=_WORKER_CONTEXT) as pool:
        pending: dict[Future, PageTask] = {}
        broken = False
        while (queue and not broken) or pending:
            # Bounded submission keeps memory flat on batches of tens of thousands of pages.
            while queue and not broken and len(pending) < workers * 4:
                task = queue.popleft()
                pending[pool.submit(run_task, task)] = task
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                try:
                    yield future.result()[0]
                except BrokenProcessPool:
                    broken = True
                    attempts[task.page_id] = attempts.get(task.page_id, 0) + 1
                    suspects.append(task)


def _run_alone(task: PageTask, initargs: tuple[str, str, str], attempts: dict[str, int],
               suspects: deque[PageTask]) -> Iterator[str]:
    """Retry one suspect page in its own process: a crash there is this page's alone."""
    with ProcessPoolExecutor(max_workers=1, initializer=init_worker, initargs=initargs,
                             mp_context=_WORKER_CONTEXT) as pool:
        try:
            yield pool.submit(run_task, task).result()[0]
            return
        except BrokenProcessPool:
            attempts[task.page_id] = attempts.get(task.page_id, 0) + 1
    if attempts[task.page_id] < MAX_ATTEMPTS:
        suspects.append(task)
        return
    template = load_template(initargs[0])
    result = failed_result(task, template, "worker-crashed",
                           f"the worker process died on this page {attempts[task.page_id]} times")
    write_atomically(page_json_path(Path(initargs[2]), task.page_id), result.model_dump_json().encode())
    yield task.page_id
