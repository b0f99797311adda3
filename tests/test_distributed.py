"""`census run --executor dask`: a real Dask LocalCluster (and a real scheduler process reached
by address) gives the same store as the local process pool; a page that keeps killing its
Dask worker is quarantined and the batch finishes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.evaluation.bench import store_differences
from pipeline.errors import ExitCode, ServiceError
from pipeline.run.batch import run
from pipeline.run.runner import RunOptions

pytestmark = pytest.mark.server
CENSUS = [sys.executable, "-m", "pipeline.cli"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synth import generate_pages

    folder = tmp_path_factory.mktemp("pages")
    generate_pages(folder, 3, seed=21)
    return folder


@pytest.fixture(scope="module")
def local_run(pages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("local") / "run"
    run([pages], RunOptions(out=run_dir, engine="null", workers=2), progress=False)
    return run_dir


def dask_run(pages: Path, out: Path, *options: str, engine: str = "null",
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`census run PAGES --out OUT --engine ENGINE --executor dask --json OPTIONS...` in a subprocess."""
    return subprocess.run(
        [*CENSUS, "run", str(pages), "--out", str(out), "--engine", engine, "--executor", "dask", "--json", *options],
        env={**os.environ, "OMP_THREAD_LIMIT": "1", **(env or {})},
        capture_output=True,
        timeout=600,
    )


def test_local_cluster_store_equals_local_pool(pages: Path, local_run: Path, tmp_path: Path) -> None:
    completed = dask_run(pages, tmp_path / "run", "--workers", "2")
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    assert json.loads(completed.stdout)["pages"] == 3
    assert store_differences(local_run, tmp_path / "run") == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_remote_scheduler_by_address(pages: Path, local_run: Path, tmp_path: Path) -> None:
    """A scheduler and a worker started as separate processes, as on a real cluster."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    bin_dir = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "worker",
            address,
            "--nthreads",
            "1",
            "--nworkers",
            "2",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_workers(address, 2)
        completed = dask_run(pages, tmp_path / "run", "--scheduler", address)
        assert completed.returncode == 0, completed.stderr.decode()[-3000:]
        assert store_differences(local_run, tmp_path / "run") == []
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(timeout=60)


def wait_for_workers(address: str, n_workers: int, timeout: float = 90) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n_workers, timeout=timeout)


def test_unreachable_scheduler_is_a_service_error(
    pages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipeline.run.distributed.CONNECT_TIMEOUT_S", 3)
    options = RunOptions(
        out=tmp_path / "run", engine="null", executor="dask", scheduler=f"tcp://127.0.0.1:{free_port()}"
    )
    started = time.monotonic()
    with pytest.raises(ServiceError, match="cannot reach the Dask scheduler"):
        run([pages], options, progress=False)
    assert time.monotonic() - started < 60


def test_page_that_keeps_killing_its_dask_worker_is_quarantined(pages: Path, tmp_path: Path) -> None:
    completed = dask_run(pages, tmp_path / "run", "--workers", "2", engine="faulty",
                         env={"CENSUS_FAULTY_MODE": "crash", "CENSUS_FAULTY_MATCH": "synth-0001.png"})
    assert completed.returncode == ExitCode.PAGES_FAILED, completed.stderr.decode()[-3000:]
    failures = [json.loads(line) for line in (tmp_path / "run" / "failures.jsonl").read_text().splitlines()]
    pages_failed = [(Path(f["source"]).name, f["reason"]) for f in failures if f["reason"] != "unsupported-format"]
    assert pages_failed == [("synth-0001.png", "worker-crashed")]  # the synth folder's JSON/XML are listed too
    assert json.loads(completed.stdout)["pages"] == 2
