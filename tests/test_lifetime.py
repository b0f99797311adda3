"""`census run` killed (SIGKILL) or stopped (SIGTERM) mid-batch leaves no process of the run
behind (fork server and pool workers, or the Dask LocalCluster's worker processes), and a resume
then gives the store an uninterrupted run gives."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from pipeline.evaluation.bench import store_differences
from tests.test_resume import census_run, pages, reference, run_env  # noqa: F401


def _workers(children: list[psutil.Process], run_pid: int, executor: str) -> list[psutil.Process]:
    """Pool workers are the fork server's children; Dask's worker processes are spawned by the run."""
    if executor == "local":
        return [child for child in children if child.ppid() != run_pid]
    return [child for child in children if "spawn_main" in " ".join(_cmdline(child))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _descendants_after_start(process: subprocess.Popen, executor: str, timeout: float = 120) -> list[psutil.Process]:
    """The run's helper processes, once its 2 workers are up."""
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = parent.children(recursive=True)
        if len(_workers(children, process.pid, executor)) >= 2:
            return children
        time.sleep(0.05)
    raise AssertionError("the run's workers never started")


@pytest.mark.parametrize("executor", ["local", "dask"])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_no_process_of_the_run_outlives_it_and_resume_is_identical(
        signum: int, executor: str, pages: Path, reference: tuple[Path, float], tmp_path: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    log = tmp_path / "stderr"
    command = [*census_run(pages, run_dir), "--executor", executor]
    with log.open("wb") as stderr_file:  # a file, not a pipe: a surviving helper cannot block the test
        process = subprocess.Popen(command, env=run_env(), stdout=subprocess.DEVNULL, stderr=stderr_file)
        helpers = _descendants_after_start(process, executor)
        process.send_signal(signum)
        process.wait(timeout=120)
    stderr = log.read_bytes()
    if signum == signal.SIGTERM:
        assert process.returncode == 143
        assert b"run the same command again to resume" in stderr
        assert b"Traceback" not in stderr
    _, alive = psutil.wait_procs(helpers, timeout=5)
    for survivor in alive:  # do not leave them running after a failure
        survivor.kill()
    assert alive == [], f"still running after 5 s: {[p.pid for p in alive]}"
    completed = subprocess.run(census_run(pages, run_dir), env=run_env(), capture_output=True, timeout=600)
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    assert store_differences(reference[0], run_dir) == []


def test_out_that_is_an_existing_file_is_one_line_and_exit_2(pages: Path, tmp_path: Path) -> None:  # noqa: F811
    existing = tmp_path / "file"
    existing.write_text("keep me")
    completed = subprocess.run(census_run(pages, existing), env=run_env(), capture_output=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.decode().strip().splitlines() == [f"error: --out {existing} is an existing file, not a folder"]
    assert existing.read_text() == "keep me"
