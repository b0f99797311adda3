"""`make bench` (python -m pipeline.evaluation.bench): how fast and how lean the pipeline is, measured on
synthetic register pages, with everything timed in the same invocation on the same pages:

- end-to-end pages/min on 2 worker processes with the default engine, per-stage breakdown,
  peak RSS per worker process (sampled from outside), and the main process's;
- cost against batch size (seconds per page on --subset, --pages and optionally --linear
  pages), and scaling 1 -> 2 workers on the --subset pages;
- the local process pool against a Dask LocalCluster on the --subset pages (throughput, and the
  two stores must hold identical contents apart from timestamps);
- two baselines on the same pages: plain tesseract full-page OCR, and the pipeline with the
  tesseract engine, reported as ratios to the default pipeline;
- optional sections from other modules (`pipeline.htr.bench`, `review.bench`,
  `pipeline.dataset.bench`), skipped with a message when a module is missing.

Figures go to stdout as a table and to bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Columns that legitimately differ between two runs of the same pages.
TIMESTAMP_COLUMNS = {"processed_at"}
OPTIONAL_SECTIONS = {
    "htr": "pipeline.htr.bench",
    "review": "review.bench",
    "dataset": "pipeline.dataset.bench",
}


# --- store comparison (also used by the reliability tests) ------------------------------------


def store_contents(run_dir: Path) -> dict[str, list[tuple]]:
    """Every table of RUN_DIR/census.sqlite as sorted rows, timestamp columns left out."""
    from pipeline.run.store import STORE_NAME

    connection = sqlite3.connect(f"file:{Path(run_dir) / STORE_NAME}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {table: _table_rows(connection, table) for table in tables}
    finally:
        connection.close()


def _table_rows(connection: sqlite3.Connection, table: str) -> list[tuple]:
    columns = [
        row[1] for row in connection.execute(f"PRAGMA table_info({table})") if row[1] not in TIMESTAMP_COLUMNS
    ]
    rows = connection.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    return sorted(rows, key=repr)


def store_differences(left: Path, right: Path) -> list[str]:
    """Human-readable differences between two stores' contents (empty when identical)."""
    a, b = store_contents(left), store_contents(right)
    problems = [f"table {t} only in {left if t in a else right}" for t in sorted(set(a) ^ set(b))]
    for table in sorted(set(a) & set(b)):
        if a[table] != b[table]:
            only_a = set(a[table]) - set(b[table])
            only_b = set(b[table]) - set(a[table])
            problems.append(
                f"{table}: {len(a[table])} vs {len(b[table])} rows, {len(only_a)} only in {left}, "
                f"{len(only_b)} only in {right}; e.g. {sorted(only_a or only_b, key=repr)[:1]}"
            )
    return problems


# --- measuring ---------------------------------------------------------------------------------


class RssSampler:
    """Peak resident memory of every child process (workers), sampled from a background thread."""

    def __init__(self, interval_s: float = 0.2) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self.peaks: dict[int, int] = {}
        self.main_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample_until_stopped(self) -> None:
        import psutil

        while not self._stop.is_set():
            self.main_peak = max(self.main_peak, self._process.memory_info().rss)
            for child in self._process.children(recursive=True):
                try:
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)
                except psutil.Error:  # the child exited between listing and reading
                    continue
            self._stop.wait(self._interval)

    def figures(self) -> dict[str, Any]:
        mib = 1 << 20
        return {
            "peak_rss_per_worker_mib": round(max(self.peaks.values(), default=0) / mib, 1),
            "peak_rss_each_child_mib": sorted(
                (round(peak / mib, 1) for peak in self.peaks.values()), reverse=True
            ),
            "peak_rss_main_mib": round(self.main_peak / mib, 1),
        }


def timed_run(
    pages_dir: Path, run_dir: Path, engine: str, workers: int, executor: str = "local"
) -> dict[str, Any]:
    """One fresh `census run` in-process; its throughput, stage breakdown and memory."""
    from pipeline.run.batch import run
    from pipeline.run.runner import RunOptions

    shutil.rmtree(run_dir, ignore_errors=True)
    options = RunOptions(out=run_dir, engine=engine, workers=workers, executor=executor)
    started, main_cpu = time.perf_counter(), time.process_time()
    with RssSampler() as sampler:
        summary = run([pages_dir], options, progress=True)
    seconds = time.perf_counter() - started  # includes writing the report, as users wait for it
    # The main process plans, fills the store and writes the report: the part of a run whose cost
    # could grow faster than the number of pages (workers cost the same per page by construction).
    main_cpu = time.process_time() - main_cpu
    processed = summary.pages + summary.pages_failed
    per_page_ms = {
        stage: round(1000 * total / max(1, processed), 1) for stage, total in summary.stage_seconds.items()
    }
    return {
        "engine": engine,
        "workers": workers,
        "executor": executor,
        "pages": processed,
        "pages_failed": summary.pages_failed,
        "seconds": round(seconds, 2),
        "main_process_cpu_ms_per_page": round(1000 * main_cpu / max(1, processed), 1),
        "pages_per_minute": round(60 * processed / seconds, 1),
        "stage_ms_per_page": per_page_ms,
        "accepted_pct": summary.accepted_pct,
        **sampler.figures(),
    }


def cpu_per_page(pages_dir: Path, run_dir: Path, engine: str) -> dict[str, Any]:
    """CPU seconds one page costs (this process plus its tesseract children), pages run one after the
    other in this process: unlike wall-clock figures, barely moved by other programs on the machine."""
    from pipeline.run import runner

    shutil.rmtree(run_dir, ignore_errors=True)
    runner.init_worker(runner.DEFAULT_TEMPLATE, engine, str(run_dir))
    tasks = runner.plan([pages_dir]).tasks
    before = os.times()
    outcomes = [runner.run_task(task)[1] for task in tasks]
    after = os.times()
    cpu = sum(after[i] - before[i] for i in range(4))  # user, system, children's user and system
    per_page = cpu / max(1, len(tasks))
    return {
        "pages": len(tasks),
        "pages_failed": outcomes.count("failed"),
        "cpu_seconds_per_page": round(per_page, 3),
        "wall_seconds_per_page": round((after[4] - before[4]) / max(1, len(tasks)), 3),
        # What 2 dedicated cores would sustain, with one page per core at a time.
        "projected_pages_per_minute_on_2_idle_cores": round(2 * 60 / per_page, 1) if per_page else None,
    }


def plain_tesseract(pages: list[Path], workers: int) -> dict[str, Any]:
    """Baseline: full-page tesseract OCR of each page (no layout, no fields), `workers` in parallel."""
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        characters = sum(pool.map(_ocr_full_page, pages))
    seconds = time.perf_counter() - started
    return {
        "pages": len(pages),
        "workers": workers,
        "seconds": round(seconds, 2),
        "pages_per_minute": round(60 * len(pages) / seconds, 1),
        "characters_read": characters,
    }


def _ocr_full_page(path: Path) -> int:
    import pytesseract

    os.environ["OMP_THREAD_LIMIT"] = "1"
    return len(pytesseract.image_to_string(str(path), lang="cat+spa", timeout=300))


# --- pages ---------------------------------------------------------------------------------------


def synthetic_pages(folder: Path, n_pages: int, seed: int) -> list[Path]:
    """`n_pages` synthetic register pages (25 rows × template columns), reused when already there."""
    from pipeline.synth import generate_pages

    existing = sorted(folder.glob("synth-*.png"))
    if len(existing) == n_pages:
        return existing
    shutil.rmtree(folder, ignore_errors=True)
    return sorted(p for p in generate_pages(folder, n_pages, seed, progress=True) if p.suffix == ".png")


def replicated_pages(pages: list[Path], folder: Path, n_pages: int) -> Path:
    """A folder of `n_pages` distinct files made from `pages` (re-saved with a copy number in the PNG
    metadata, so each has its own content hash and page id, and costs what its original costs)."""
    from PIL import Image, PngImagePlugin

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index in range(n_pages):
        source = pages[index % len(pages)]
        info = PngImagePlugin.PngInfo()
        info.add_text("census-bench-copy", str(index))
        with Image.open(source) as image:
            image.save(folder / f"copy-{index:05d}.png", pnginfo=info, compress_level=1)
    return folder


def subset(pages: list[Path], folder: Path, n_pages: int) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for page in pages[:n_pages]:
        shutil.copy2(page, folder)
    return folder


# --- the benchmark -------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.run.runner import DEFAULT_ENGINE

    work = Path(args.work)
    engine = args.engine or DEFAULT_ENGINE
    pages = synthetic_pages(work / "pages", args.pages, args.seed)
    small = subset(pages, work / "subset", min(args.subset, len(pages)))
    results: dict[str, Any] = {
        "engine": engine,
        "cpu_count": os.cpu_count(),
        "pages": len(pages),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1_5_15_min_at_start": [round(load, 2) for load in os.getloadavg()],
    }
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("end_to_end", lambda: timed_run(work / "pages", work / "run-local-2", engine, 2)),
        ("cpu_profile", lambda: cpu_per_page(small, work / "run-cpu", engine)),
        ("one_worker", lambda: timed_run(small, work / "run-local-1", engine, 1)),
        ("two_workers_subset", lambda: timed_run(small, work / "run-local-2-subset", engine, 2)),
        ("dask_local_cluster", lambda: timed_run(small, work / "run-dask-2", engine, 2, "dask")),
        ("baseline_plain_tesseract", lambda: plain_tesseract(sorted(small.glob("*.png")), 2)),
        ("baseline_pipeline_tesseract", lambda: timed_run(small, work / "run-tesseract-2", "tesseract", 2)),
    ]
    if args.linear:
        sections.append(
            (
                "linearity_big",
                lambda: timed_run(
                    replicated_pages(pages, work / f"pages-{args.linear}", args.linear),
                    work / "run-big",
                    engine,
                    2,
                ),
            )
        )
    for name, section in sections:
        results[name] = _section(name, section)
    # Other processes competing for the cores skew every figure: keep the evidence with them.
    results["load_average_1_5_15_min_at_end"] = [round(load, 2) for load in os.getloadavg()]
    results["derived"] = derived_figures(results, work)
    for name, module in OPTIONAL_SECTIONS.items():
        if args.optional:
            results[name] = optional_section(module, args.optional_timeout)
    return results


def _section(name: str, body: Callable[[], Any]) -> Any:
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        value = body()
    except Exception as error:  # one broken section must not lose the others' figures
        value = {"error": f"{type(error).__name__}: {error}"}
    print(f"[bench] {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return value


def derived_figures(results: dict[str, Any], work: Path) -> dict[str, Any]:
    """Ratios between sections; None where a section failed."""

    def ppm(section: str) -> float | None:
        value = results.get(section)
        return value.get("pages_per_minute") if isinstance(value, dict) else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    derived: dict[str, Any] = {
        "scaling_1_to_2_workers": ratio(ppm("two_workers_subset"), ppm("one_worker")),
        "dask_over_local": ratio(ppm("dask_local_cluster"), ppm("two_workers_subset")),
        "default_over_plain_tesseract": ratio(ppm("two_workers_subset"), ppm("baseline_plain_tesseract")),
        "default_over_pipeline_tesseract": ratio(
            ppm("two_workers_subset"), ppm("baseline_pipeline_tesseract")
        ),
    }
    local, dask = work / "run-local-2-subset", work / "run-dask-2"
    if (local / "census.sqlite").exists() and (dask / "census.sqlite").exists():
        derived["dask_store_differences"] = store_differences(local, dask)
        derived["dask_store_identical"] = not derived["dask_store_differences"]
    # Linear cost: seconds per page (2 workers) stays the same as the batch grows.
    runs = [results.get(name) for name in ("two_workers_subset", "end_to_end", "linearity_big")]
    runs = [r for r in runs if isinstance(r, dict) and "seconds" in r and r.get("pages")]
    if len(runs) >= 2:
        derived["seconds_per_page"] = {r["pages"]: round(r["seconds"] / r["pages"], 3) for r in runs}
        per_page = [r["seconds"] / r["pages"] for r in runs]
        derived["linearity_ratio"] = ratio(per_page[-1], per_page[0])
        # Wall-clock moves with other programs' load; the main process's CPU per page does not.
        derived["main_process_cpu_ms_per_page"] = {
            r["pages"]: r["main_process_cpu_ms_per_page"] for r in runs
        }
    derived["bars"] = bars(results.get("end_to_end"), derived.get("linearity_ratio"))
    return derived


def bars(end_to_end: Any, linearity: float | None) -> dict[str, bool | None]:
    """The issue's bars: >= 60 pages/min on 2 workers, <= 1 GiB per worker, cost linear in pages."""
    measured = isinstance(end_to_end, dict) and "pages_per_minute" in end_to_end
    return {
        "pages_per_minute_at_least_60": end_to_end["pages_per_minute"] >= 60 if measured else None,
        "peak_rss_per_worker_at_most_1GiB": end_to_end["peak_rss_per_worker_mib"] <= 1024
        if measured
        else None,
        # Per-page cost of the big batch within 15 % of the small one's.
        "linear_in_pages": linearity <= 1.15 if linearity else None,
    }


def optional_section(module_name: str, timeout_s: float) -> Any:
    """Another module's benchmark, run as `python -m MODULE` with its own defaults; the JSON object
    it prints last on stdout, or a note when the module is missing or fails."""
    import importlib.util
    import subprocess

    try:
        found = importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        found = False
    if not found:
        print(f"[bench] {module_name}: skipped, module not present", file=sys.stderr)
        return {"skipped": f"{module_name} is not present"}
    print(f"[bench] {module_name} ...", file=sys.stderr, flush=True)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", module_name], stdout=subprocess.PIPE, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{module_name} took over {timeout_s:.0f} s"}
    lines = [line for line in completed.stdout.splitlines() if line.strip().startswith("{")]
    if completed.returncode != 0 or not lines:
        return {"error": f"{module_name} exited {completed.returncode} without a JSON result"}
    return json.loads(lines[-1])


def print_table(results: dict[str, Any]) -> None:
    rows = [("section", "pages", "workers", "pages/min", "peak RSS/worker MiB")]
    for name, value in results.items():
        if isinstance(value, dict) and "pages_per_minute" in value:
            rows.append(
                (
                    name,
                    str(value["pages"]),
                    str(value["workers"]),
                    str(value["pages_per_minute"]),
                    str(value.get("peak_rss_per_worker_mib", "")),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    end_to_end = results.get("end_to_end", {})
    if "stage_ms_per_page" in end_to_end:
        print(
            "stages (ms per page, summed over workers): "
            + ", ".join(f"{stage} {ms}" for stage, ms in end_to_end["stage_ms_per_page"].items())
        )
    print("derived: " + json.dumps(results.get("derived", {}), ensure_ascii=False))
    for name in OPTIONAL_SECTIONS:
        if name in results:
            print(f"{name}: {json.dumps(results[name], ensure_ascii=False)[:400]}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluation.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pages", type=int, default=50, help="synthetic pages for the main runs (default 50)"
    )
    parser.add_argument(
        "--subset", type=int, default=10, help="pages for the 1-worker run and the baselines (default 10)"
    )
    parser.add_argument(
        "--linear",
        type=int,
        default=0,
        help="also time a batch of this many pages (copies of the synthetic ones) for linear "
        "cost; 0 (default): compare --subset with --pages only",
    )
    parser.add_argument("--engine", default=None, help="engine of the main runs (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-optional",
        dest="optional",
        action="store_false",
        help="skip the other modules' benchmarks (htr, review, dataset)",
    )
    parser.add_argument(
        "--optional-timeout",
        type=float,
        default=300,
        help="seconds allowed to each optional benchmark (default 300)",
    )
    parser.add_argument("--work", default="runs/bench", help="folder for pages and runs (default runs/bench)")
    parser.add_argument("--out", default="bench.json", help="where to write the figures (default bench.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    args = parse_args(argv)
    results = run_benchmark(args)
    Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print_table(results)
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
