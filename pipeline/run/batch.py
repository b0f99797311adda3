"""A whole run: plan the page tasks, execute them (a local worker pool or a Dask cluster), fill
the store from the pages' result files, write the failures and the report, and summarise.

Resumable: a page whose RUN_DIR/pages/<page_id>.json exists is not processed again, and the
store is (re)filled from those files idempotently, so a run killed anywhere loses nothing. Pages added to
a run that has its own calibration (RUN_DIR/calibration.json, `census recalibrate`) are routed by it too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.run import store
from pipeline.errors import UsageError
from pipeline.models import Failure, PageResult
from pipeline.recognize import get_engine
from pipeline.run.adapt import run_engine
from pipeline.run.recalibrate import CALIBRATION_NAME, recalibrate
from pipeline.run.paths import make_folder, page_json_path, write_atomically
from pipeline.run.runner import PageTask, RunOptions, RunPlan, execute_local, plan
from pipeline.stages.templates import Template, load_template


class FileCounts(BaseModel):
    """Every input file once: processed + duplicates + failed + skipped == inputs."""

    inputs: int
    processed: int  # every page of it done
    duplicates: int  # the same content as another input: processed once, under that name
    failed: int  # unreadable, or one of its pages failed or was quarantined (failures.jsonl)
    skipped: int  # in a folder, of a format census does not read (failures.jsonl: unsupported-format)


class RunSummary(BaseModel):
    run_dir: str
    store: str
    pages: int
    pages_failed: int
    pages_skipped: int  # already done by an earlier run (resume)
    rows: int
    cells: int
    cells_accepted: int
    cells_empty: int
    accepted_pct: float  # of non-empty cells
    review_queue: int
    failures: int  # failed files and pages (skipped files are not failures)
    failures_file: str
    files: FileCounts
    seconds: float
    pages_per_minute: float
    stage_seconds: dict[str, float]


def run(inputs: list[Path], options: RunOptions, progress: bool = True) -> RunSummary:
    started = time.perf_counter()
    run_dir = options.out
    make_folder(run_dir)
    options = options.model_copy(update={"engine": run_engine(run_dir, options.engine)})  # `census adapt`'s model
    template = load_template(options.template)
    get_engine(options.engine)  # fail fast (exit 2) on an unknown engine or a missing model
    planned = plan(inputs)
    tasks = planned.tasks
    if not tasks and not planned.failures:
        raise UsageError(f"no scans found in {', '.join(map(str, inputs))}{_skipped_note(planned.skipped)}")
    done_before = {task.page_id for task in tasks if page_json_path(run_dir, task.page_id).exists()}
    todo = [task for task in tasks if task.page_id not in done_before]
    with store.connect(run_dir) as connection:
        store.create(connection, template)
        ensure_same_template(connection, template)
        # Each page is stored in one transaction, so a page already in the store is complete.
        stored = {row[0] for row in connection.execute("SELECT page_id FROM pages")}
        fill_store(connection, template, run_dir, sorted(done_before - stored))
        finished = _progress(execute(todo, options), total=len(todo), enabled=progress)
        fill_store(connection, template, run_dir, finished)
        failed_pages = page_failures(connection, tasks)
        failures = planned.failures + failed_pages
        write_failures(run_dir, failures + planned.skipped)
    if todo and (run_dir / CALIBRATION_NAME).is_file():  # the run's own calibration routes its new pages too
        recalibrate(run_dir)
    with store.connect(run_dir, readonly=True) as connection:
        counts = store.counts(connection)
    stage_seconds = stage_totals(run_dir, [task.page_id for task in todo])
    seconds = time.perf_counter() - started
    written = counts["cells"] - counts["cells_empty"]
    summary = RunSummary(
        run_dir=str(run_dir), store=str(run_dir / store.STORE_NAME), pages_skipped=len(done_before),
        accepted_pct=round(100 * counts["cells_accepted"] / written, 1) if written else 0.0,
        failures=len(failures), failures_file=str(run_dir / "failures.jsonl"), seconds=round(seconds, 2),
        files=count_files(planned, failed_pages),
        pages_per_minute=round(60 * len(todo) / seconds, 1) if todo else 0.0, stage_seconds=stage_seconds,
        **{key: counts[key] for key in ("pages", "pages_failed", "rows", "cells", "cells_accepted",
                                         "cells_empty", "review_queue")})
    from pipeline.run.report import write_report

    write_report(run_dir, summary)
    return summary


def _skipped_note(skipped: list[Failure]) -> str:
    if not skipped:
        return ""
    return f" ({len(skipped)} files of other formats not read, e.g. {skipped[0].source})"


def count_files(planned: RunPlan, failed_pages: list[Failure]) -> FileCounts:
    """Each input file once, from this run's plan and its pages' outcomes (so a resume counts the same)."""
    failed_ids = {failure.page_id for failure in failed_pages}
    sources = {task.source for task in planned.tasks}
    failed_sources = {task.source for task in planned.tasks if task.page_id in failed_ids}
    return FileCounts(inputs=len(sources) + len(planned.duplicates) + len(planned.failures) + len(planned.skipped),
                      processed=len(sources - failed_sources), duplicates=len(planned.duplicates),
                      failed=len(planned.failures) + len(failed_sources), skipped=len(planned.skipped))


def execute(tasks: list[PageTask], options: RunOptions) -> Iterator[str]:
    if options.executor == "dask":
        from pipeline.run.distributed import execute_dask

        return execute_dask(tasks, options)
    return execute_local(tasks, options)


def ensure_same_template(connection: Any, template: Template) -> None:
    stored = store.stored_template(connection)
    if stored.name != template.name:
        raise UsageError(f"this run directory was made with template {stored.name!r}, not {template.name!r}; "
                         "use another --out")


def fill_store(connection: Any, template: Template, run_dir: Path, page_ids: Iterable[str]) -> None:
    """Write each finished page's JSON into the store (idempotent: a page replaces itself)."""
    for page_id in page_ids:
        result = PageResult.model_validate_json(page_json_path(run_dir, page_id).read_bytes())
        store.write_page(connection, result, template)


def page_failures(connection: Any, tasks: list[PageTask]) -> list[Failure]:
    ids = {task.page_id for task in tasks}
    rows = connection.execute("SELECT page_id, source, page_index, error FROM pages WHERE status = 'failed'")
    return [Failure(source=row["source"], page_index=row["page_index"], page_id=row["page_id"],
                    reason=(row["error"] or "").split(":")[0], detail=row["error"] or "")
            for row in rows if row["page_id"] in ids]


def write_failures(run_dir: Path, failures: list[Failure]) -> None:
    lines = "".join(failure.model_dump_json() + "\n" for failure in failures)
    write_atomically(run_dir / "failures.jsonl", lines.encode())


def stage_totals(run_dir: Path, page_ids: list[str]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for page_id in page_ids:
        path = page_json_path(run_dir, page_id)
        if path.exists():
            for stage, seconds in json.loads(path.read_bytes()).get("timings", {}).items():
                totals[stage] = round(totals.get(stage, 0.0) + seconds, 3)
    return totals


def _progress(page_ids: Iterator[str], total: int, enabled: bool) -> Iterator[str]:
    from tqdm import tqdm

    return iter(tqdm(page_ids, total=total, desc="pages", unit="page", file=sys.stderr,
                     disable=not enabled or total == 0))
