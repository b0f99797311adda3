"""Kill-and-resume: `census run` killed with SIGKILL at random moments (while planning, while
pages are processed, while the store is written) and resumed, ends with exactly the store an
uninterrupted run makes: no page lost, none duplicated, SQLite intact. And a worker process
that dies on a page gets the page retried a bounded number of times, then quarantined, while
the batch finishes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.evaluation.bench import store_differences
from pipeline.errors import ExitCode
from pipeline.run.runner import MAX_ATTEMPTS

CENSUS = [sys.executable, "-m", "pipeline.cli"]
N_PAGES = 4


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synth import generate_pages

    folder = tmp_path_factory.mktemp("pages")
    generate_pages(folder, N_PAGES, seed=11)
    return folder


@pytest.fixture(scope="module")
def reference(pages: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """An uninterrupted run and how long it took."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    started = time.monotonic()
    completed = subprocess.run(census_run(pages, run_dir), env=run_env(), capture_output=True, timeout=600)
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    return run_dir, time.monotonic() - started


def census_run(pages: Path, run_dir: Path, engine: str = "null", workers: int = 2) -> list[str]:
    return [
        *CENSUS,
        "run",
        str(pages),
        "--out",
        str(run_dir),
        "--engine",
        engine,
        "--workers",
        str(workers),
        "--json",
    ]


def run_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_THREAD_LIMIT": "1", **extra}


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Its own process group, so one SIGKILL takes the main process and every worker at once.
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had already finished
        pass
    process.wait(timeout=60)


def kill_after(process: subprocess.Popen, seconds: float) -> None:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass
    kill_group(process)


def kill_while_store_written(process: subprocess.Popen, run_dir: Path, timeout: float = 60) -> None:
    """Kill as soon as the store's write-ahead log changes: mid-way through a store write."""
    wal = run_dir / "census.sqlite-wal"
    before = wal.stat().st_mtime_ns if wal.exists() else None
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_mtime_ns != before:
            break
        time.sleep(0.002)
    kill_group(process)


def assert_store_sound(run_dir: Path) -> None:
    store = run_dir / "census.sqlite"
    if store.exists():
        connection = sqlite3.connect(store)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            connection.close()


def kill_after_next_result(process: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    """Kill as soon as one more page result appears: the other worker is mid-page, the store mid-fill."""
    results = run_dir / "pages"
    before = len(list(results.glob("*.json")))
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if len(list(results.glob("*.json"))) > before:
            break
        time.sleep(0.005)
    kill_group(process)


KILL_MOMENTS = ("random", "after-next-result", "store-write")


def kill_and_resume(pages: Path, run_dir: Path, reference_seconds: float, kills: int, seed: int) -> Counter:
    """SIGKILL `kills` runs, in turn at a random moment, right after a page result is written, and
    mid store write; then finish the run. Returns what the kills interrupted: 'store-write',
    'processing' (pages still without a result) or 'finishing' (store fill, failures, report).

    Only kills that hit a running process count: a run that finished first is redone (a random
    kill is then drawn within that run's own, shorter, duration).
    """
    rng = random.Random(seed)
    interrupted: Counter = Counter()
    longest, attempt = reference_seconds, 0
    n_pages = len(list(pages.glob("*.png")))
    while sum(interrupted.values()) < kills:
        moment = KILL_MOMENTS[attempt % len(KILL_MOMENTS)]
        attempt += 1
        started = time.monotonic()
        process = start(census_run(pages, run_dir), run_env())
        if moment == "store-write":
            kill_while_store_written(process, run_dir)
        elif moment == "after-next-result":
            kill_after_next_result(process, run_dir)
        else:
            kill_after(process, rng.uniform(0.2, longest))
        if process.returncode == -signal.SIGKILL:
            results = len(list((run_dir / "pages").glob("*.json")))
            stage = "processing" if results < n_pages else "finishing"
            interrupted["store-write" if moment == "store-write" else stage] += 1
        elif moment == "random":
            longest = max(0.3, time.monotonic() - started)
        assert_store_sound(run_dir)
    completed = subprocess.run(census_run(pages, run_dir), env=run_env(), capture_output=True, timeout=600)
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    print(f"kills interrupted: {dict(interrupted)}")
    return interrupted


def check_same_as_reference(run_dir: Path, reference_dir: Path, n_pages: int = N_PAGES) -> None:
    assert_store_sound(run_dir)
    assert store_differences(reference_dir, run_dir) == []
    connection = sqlite3.connect(run_dir / "census.sqlite")
    try:
        pages = connection.execute("SELECT COUNT(*), COUNT(DISTINCT source) FROM pages WHERE status = 'done'")
        assert pages.fetchone() == (n_pages, n_pages)  # none lost, none duplicated
    finally:
        connection.close()
    assert sorted(p.name for p in (run_dir / "pages").glob("*.json")) == sorted(
        p.name for p in (reference_dir / "pages").glob("*.json")
    )


def test_killed_five_times_then_resumed_equals_uninterrupted_run(
    pages: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    reference_dir, seconds = reference
    kill_and_resume(pages, tmp_path / "run", seconds, kills=5, seed=1)
    check_same_as_reference(tmp_path / "run", reference_dir)


@pytest.fixture(scope="module")
def twelve_pages(pages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve distinct files (copies of the four pages, each with its own content hash)."""
    from pipeline.evaluation.bench import replicated_pages

    return replicated_pages(sorted(pages.glob("*.png")), tmp_path_factory.mktemp("twelve") / "pages", 12)


@pytest.mark.slow
def test_killed_twenty_times_then_resumed_equals_uninterrupted_run(
    twelve_pages: Path, tmp_path: Path
) -> None:
    reference_dir = tmp_path / "reference"
    started = time.monotonic()
    completed = subprocess.run(
        census_run(twelve_pages, reference_dir), env=run_env(), capture_output=True, timeout=900
    )
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    interrupted = kill_and_resume(
        twelve_pages, tmp_path / "run", time.monotonic() - started, kills=20, seed=2
    )
    check_same_as_reference(tmp_path / "run", reference_dir, n_pages=12)
    assert interrupted["store-write"] >= 5 and interrupted["processing"] >= 1


def test_resume_after_completion_does_nothing_again(
    pages: Path, reference: tuple[Path, float], tmp_path: Path
) -> None:
    reference_dir, _ = reference
    completed = subprocess.run(
        census_run(pages, reference_dir), env=run_env(), capture_output=True, timeout=600
    )
    summary = json.loads(completed.stdout)
    assert (completed.returncode, summary["pages_skipped"], summary["pages"]) == (0, N_PAGES, N_PAGES)


# --- workers that die on a page ------------------------------------------------------------


@pytest.fixture(scope="module")
def three_pages(pages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("three")
    for page in sorted(pages.glob("*.png"))[:3]:
        (folder / page.name).write_bytes(page.read_bytes())
    return folder


def faulty_env(state: Path, **settings: str) -> dict[str, str]:
    return run_env(
        CENSUS_FAULTY_MODE="crash",
        CENSUS_FAULTY_MATCH="synth-0001.png",
        CENSUS_FAULTY_STATE=str(state),
        **settings,
    )


def failures(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "failures.jsonl").read_text().splitlines()]


def test_page_that_always_kills_its_worker_is_quarantined_and_batch_finishes(
    three_pages: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    env = faulty_env(tmp_path / "state", CENSUS_FAULTY_TIMES="1000")
    completed = subprocess.run(
        census_run(three_pages, run_dir, engine="faulty"), env=env, capture_output=True, timeout=600
    )
    assert completed.returncode == ExitCode.PAGES_FAILED, completed.stderr.decode()[-2000:]
    [failure] = failures(run_dir)
    assert (Path(failure["source"]).name, failure["reason"]) == ("synth-0001.png", "worker-crashed")
    attempts = (tmp_path / "state" / f"{failure['page_id']}.attempts").read_text()
    assert len(attempts) == MAX_ATTEMPTS  # bounded retries, each one really ran the page
    summary = json.loads(completed.stdout)
    assert (summary["pages"], summary["pages_failed"]) == (2, 1)


def test_page_that_kills_its_worker_once_succeeds_on_retry(three_pages: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = faulty_env(tmp_path / "state", CENSUS_FAULTY_TIMES="1")
    completed = subprocess.run(
        census_run(three_pages, run_dir, engine="faulty"), env=env, capture_output=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    assert failures(run_dir) == []
    assert len(list((tmp_path / "state").glob("*.attempts"))) == 1
    connection = sqlite3.connect(run_dir / "census.sqlite")
    try:
        assert connection.execute("SELECT COUNT(*) FROM pages WHERE status = 'done'").fetchone()[0] == 3
    finally:
        connection.close()


def test_store_comparison_sees_a_changed_cell(reference: tuple[Path, float], tmp_path: Path) -> None:
    """The comparison the tests above rely on does notice a single altered reading."""
    reference_dir, _ = reference
    copy = tmp_path / "copy"
    copy.mkdir()
    source = sqlite3.connect(reference_dir / "census.sqlite")
    target = sqlite3.connect(copy / "census.sqlite")
    try:
        source.backup(target)
        target.execute("UPDATE cells SET text = text || 'x' WHERE rowid = (SELECT MIN(rowid) FROM cells)")
        target.commit()
    finally:
        source.close()
        target.close()
    [difference] = store_differences(reference_dir, copy)
    assert difference.startswith("cells:")
