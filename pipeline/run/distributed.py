"""Run the per-page task on a Dask distributed cluster (`census run --executor dask`).

Each Dask worker runs the very same `runner.run_task` as a local pool worker and writes the
page's JSON result into the run directory, which must therefore be shared (the same path on
every machine); the main process fills the store from those files, as with the local pool,
so both executors produce the same store. Without a scheduler address a LocalCluster of
`workers` one-thread processes is started on 127.0.0.1.

A worker that dies on a page is restarted by its nanny and the page rescheduled; after
MAX_ATTEMPTS deaths the scheduler gives up (KilledWorker) and the page is quarantined with
reason "worker-crashed", like the local pool does. The scheduler hands each one-thread worker
a single task at a time (worker-saturation 1.0), so a death is only blamed on the page that
was running.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import ServiceError, UsageError
from pipeline.run.paths import page_json_path, write_atomically
from pipeline.run.runner import MAX_ATTEMPTS, PageTask, RunOptions, failed_result, init_worker, run_task
from pipeline.stages.templates import load_template

CONNECT_TIMEOUT_S = 30
IN_FLIGHT_PER_WORKER = 4  # tasks submitted ahead per worker: keeps workers busy, memory flat

# Scheduler settings for the LocalCluster we start (a remote scheduler uses its own config;
# docs/cluster.md gives the matching command line).
CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": MAX_ATTEMPTS - 1,
    "distributed.scheduler.worker-saturation": 1.0,
}


# (template, engine, run_dir) this Dask worker process was initialised with.
_initialised_with: list[tuple[str, str, str]] = []


def process_page_on_worker(task: PageTask, template: str, engine: str, run_dir: str) -> tuple[str, str]:
    """Dask task: load the template and engine once per worker process, then run the page."""
    settings = (template, engine, run_dir)
    if _initialised_with != [settings]:
        init_worker(*settings)
        _initialised_with[:] = [settings]
    return run_task(task)


def execute_dask(tasks: list[PageTask], options: RunOptions) -> Iterator[str]:
    """Run tasks on the cluster at `options.scheduler` (or a LocalCluster); yield page ids as they finish."""
    if not tasks:
        return
    run_dir = str(Path(options.out).resolve())
    template = _template_for_workers(options.template)
    with _client(options) as client:
        # A remote cluster's size decides how many pages are kept in flight, not --workers.
        slots = max(options.workers, sum(client.nthreads().values()))
        yield from _submit_and_collect(client, tasks, template, options.engine, run_dir, slots)


def _submit_and_collect(
    client: Any, tasks: list[PageTask], template: str, engine: str, run_dir: str, slots: int
) -> Iterator[str]:
    from distributed import as_completed

    queue = iter(tasks)
    by_key: dict[str, PageTask] = {}

    def submit(task: PageTask) -> Any:
        # pure=False: a resumed run must really re-run the page, never reuse a cached result.
        future = client.submit(
            process_page_on_worker, task, template, engine, run_dir, key=f"page-{task.page_id}", pure=False
        )
        by_key[future.key] = task
        return future

    in_flight = max(1, slots) * IN_FLIGHT_PER_WORKER
    completed = as_completed([submit(task) for _, task in zip(range(in_flight), queue)])
    for future in completed:
        task = by_key.pop(future.key)
        yield _outcome(future, task, template, run_dir)
        next_task = next(queue, None)
        if next_task is not None:
            completed.add(submit(next_task))


def _outcome(future: Any, task: PageTask, template: str, run_dir: str) -> str:
    """The finished page's id; a page that kept killing its worker is written as quarantined."""
    from distributed import KilledWorker

    try:
        future.result()
    except KilledWorker:
        result = failed_result(
            task,
            load_template(template),
            "worker-crashed",
            f"the worker process died on this page {MAX_ATTEMPTS} times",
        )
        write_atomically(page_json_path(Path(run_dir), task.page_id), result.model_dump_json().encode())
    except Exception as error:  # a worker that cannot run pages at all: stop, the run resumes later
        raise ServiceError(
            f"a Dask worker failed to run page {task.page_id}: {type(error).__name__}: {error}"
        ) from error
    if not page_json_path(Path(run_dir), task.page_id).exists():
        raise ServiceError(
            f"a Dask worker wrote {page_json_path(Path(run_dir), task.page_id)} but it is not "
            "visible here: the run directory must be on a filesystem shared by all machines"
        )
    return task.page_id


def _template_for_workers(template: str) -> str:
    """A shipped template's name, or the absolute path of a template file (workers have another cwd)."""
    path = Path(template)
    return str(path.resolve()) if path.suffix in {".yaml", ".yml"} and path.is_file() else template


@contextmanager
def _client(options: RunOptions) -> Iterator[Any]:
    from distributed import Client

    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout=CONNECT_TIMEOUT_S)
        except ValueError as error:  # not an address at all
            raise UsageError(f"--scheduler {options.scheduler!r} is not a scheduler address (tcp://HOST:PORT): "
                             f"{error}") from error
        except (OSError, TimeoutError) as error:
            raise ServiceError(f"cannot reach the Dask scheduler at {options.scheduler}: {error}") from error
        with client:
            yield client
        return
    with local_cluster(options.workers) as cluster, Client(cluster) as client:
        yield client


@contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A LocalCluster of one-thread worker processes, bound to 127.0.0.1, dashboard off."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(CLUSTER_CONFIG):
        # The scheduler's HTTP endpoint (health, metrics) on a free loopback port; no dashboard.
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    try:
        yield cluster
    finally:
        cluster.close()
