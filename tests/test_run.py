"""End to end: `census run` on synthetic register pages — store contents, resume, bad inputs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = "null"  # routing and storage only; recognition quality is tested with the real engines


def census(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synth import generate_pages

    folder = tmp_path_factory.mktemp("scans")
    generate_pages(folder, n_pages=2, seed=11)
    return folder


@pytest.fixture(scope="module")
def finished_run(scans: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run")
    done = census("run", str(scans), "--out", str(run_dir), "--engine", ENGINE, "--workers", "2", "--json")
    assert done.returncode == 0, done.stderr
    return run_dir, json.loads(done.stdout.strip().splitlines()[-1])


def test_run_fills_the_store_with_pages_cells_and_persons(finished_run):
    run_dir, summary = finished_run
    assert summary["pages"] == 2 and summary["failures"] == 0
    db = sqlite3.connect(run_dir / "census.sqlite")
    pages = db.execute("SELECT page_id, width, height, status FROM pages").fetchall()
    assert len(pages) == 2 and all(status == "done" for *_, status in pages)
    n_rows = db.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
    assert n_rows == summary["rows"] > 20
    # every cell lies inside its page, in original page pixels
    outside = db.execute("""SELECT COUNT(*) FROM cells c JOIN pages p USING (page_id)
                            WHERE x0 < 0 OR y0 < 0 OR x1 > p.width OR y1 > p.height OR x1 <= x0""").fetchone()[0]
    assert outside == 0
    fields = {row[0] for row in db.execute("SELECT DISTINCT field FROM cells")}
    assert {"name", "age", "relation"} <= fields
    # the null engine reads nothing: every written cell needs review, blank ones are empty
    statuses = dict(db.execute("SELECT status, COUNT(*) FROM cells GROUP BY status").fetchall())
    assert set(statuses) <= {"needs_review", "empty"} and statuses["needs_review"] == summary["review_queue"]
    assert (run_dir / "images").is_dir() and len(list((run_dir / "images").glob("*.jpg"))) == 2


def test_rerun_resumes_without_redoing_or_duplicating(finished_run, scans):
    run_dir, first = finished_run
    again = census("run", str(scans), "--out", str(run_dir), "--engine", ENGINE, "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["pages_skipped"] == 2 and second["pages"] == 2
    assert (second["rows"], second["cells"]) == (first["rows"], first["cells"])


def test_bad_files_are_recorded_and_the_batch_goes_on(scans, tmp_path):
    from PIL import Image

    batch = tmp_path / "batch"
    batch.mkdir()
    good, other = sorted(scans.glob("*.png"))
    (batch / good.name).write_bytes(good.read_bytes())
    (batch / "copy-of-the-same-scan.png").write_bytes(good.read_bytes())  # processed once, not a failure
    Image.open(other).save(batch / "other.gif")
    (batch / "empty.jpg").write_bytes(b"")
    (batch / "notes.png").write_text("not an image at all")
    (batch / "cut.png").write_bytes(good.read_bytes()[:5000])
    (batch / "notes.txt").write_text("a list of the pages")  # not read, but listed and counted
    (batch / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (batch / ".DS_Store").write_bytes(b"hidden: neither read nor counted")
    run_dir = tmp_path / "run"
    done = census("run", str(batch), "--out", str(run_dir), "--engine", ENGINE, "--json")
    assert done.returncode == 3, done.stderr
    failures = [json.loads(line) for line in (run_dir / "failures.jsonl").read_text().splitlines()]
    reasons = {Path(f["source"]).name: f["reason"] for f in failures}
    assert reasons == {"empty.jpg": "empty-file", "notes.png": "not-an-image", "cut.png": "truncated",
                       "notes.txt": "unsupported-format", "phone.heic": "unsupported-format"}
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["pages"], summary["failures"]) == (2, 3)
    files = {"inputs": 8, "processed": 2, "duplicates": 1, "failed": 3, "skipped": 2}
    assert summary["files"] == files
    again = census("run", str(batch), "--out", str(run_dir), "--engine", ENGINE, "--json")
    resumed = json.loads(again.stdout.strip().splitlines()[-1])
    assert (again.returncode, resumed["pages_skipped"], resumed["files"]) == (3, 2, files)
    assert len((run_dir / "failures.jsonl").read_text().splitlines()) == len(failures)


def test_a_folder_of_other_formats_only_is_a_usage_error(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "index.xml").write_text("<mets/>")
    done = census("run", str(tmp_path / "scans"), "--out", str(tmp_path / "r"), "--engine", ENGINE)
    assert done.returncode == 2
    assert "no scans found" in done.stderr and "1 files of other formats not read" in done.stderr


def test_usage_errors_exit_2(tmp_path):
    out = str(tmp_path / "r")
    assert census("run", str(tmp_path / "missing"), "--out", out, "--engine", ENGINE).returncode == 2
    assert census("run", str(tmp_path), "--out", out, "--engine", ENGINE, "--template", "nope").returncode == 2
    assert census("run", str(tmp_path), "--out", out, "--engine", "no-such-engine").returncode == 2
