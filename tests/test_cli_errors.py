"""A sweep of every `census` command with bad arguments: each ends with its documented exit code
(2 usage, 4 an external service), one clear line on stderr, and never a traceback.

The commands run in this process through `pipeline.cli.main`, the console script's own entry point
(exit codes are mapped there), so an exception the CLI does not map fails the case with its traceback.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import app, main


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths a user could get wrong: missing, a file, a folder that is not a run, a corrupt store, a real run."""
    from pipeline.synth import generate_pages

    root = tmp_path_factory.mktemp("fx")
    (root / "file.txt").write_text("hello\n")
    (root / "bad.yaml").write_text("a: [unclosed\n")
    (root / "notarun").mkdir()
    (root / "corrupt").mkdir()
    (root / "corrupt" / "census.sqlite").write_text("not an SQLite file\n")
    generate_pages(root / "scans", n_pages=1, seed=3)
    made = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(root / "scans"), "--out", str(root / "run"),
                           "--engine", "null", "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    with sqlite3.connect(root / "run" / "census.sqlite") as connection:
        (page_id,) = connection.execute("SELECT page_id FROM pages").fetchone()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    return {"F": str(root), "M": str(root / "missing"), "page": page_id, "closed": closed}


# (arguments, exit code, a fragment of the one-line message); {F} is the fixture folder, {M} a missing path.
CASES = [
    ("templates extra", 2, "Got unexpected extra argument"),
    ("run {M} --out {F}/o --engine null", 2, "input not found"),
    ("run {F}/scans --out {F}/file.txt --engine null", 2, "is an existing file, not a folder"),
    ("run {F}/scans --out {F}/file.txt/sub --engine null", 2, "cannot create the folder (Not a directory)"),
    ("run {F}/scans --out {F}/corrupt --engine null", 2, "is not a census store"),
    ("run {F}/scans --out {F}/o --engine null --workers 0", 2, "Invalid value for '--workers'"),
    ("run {F}/scans --out {F}/o --engine null --workers -1", 2, "Invalid value for '--workers'"),
    ("run {F}/scans --out {F}/o --engine null --template nope", 2, "template 'nope' not found"),
    ("run {F}/scans --out {F}/o --engine null --template {F}/bad.yaml", 2, "invalid template"),
    ("run {F}/scans --out {F}/o --engine null --template {F}/file.txt", 2, "invalid template"),
    ("run {F}/scans --out {F}/o --engine null --template {F}/notarun", 2, "not found"),
    ("run {F}/scans --out {F}/o --engine nope", 2, "unknown engine 'nope'"),
    ("run {F}/scans --out {F}/o --engine crnn:{M}.onnx", 2, "crnn model not found"),
    ("run {F}/scans --out {F}/o --engine crnn:{F}/file.txt", 2, "no file.charset.json beside it"),
    ("run {F}/scans --out {F}/o --engine null --executor nope", 2, "'nope' is not local or dask"),
    ("run {F}/scans --out {F}/o --engine null --scheduler tcp://127.0.0.1:9", 2, "--scheduler needs --executor dask"),
    ("run {F}/scans --out {F}/o --engine null --executor dask --scheduler nonsense", 2, "is not a scheduler address"),
    ("run {F}/scans --out {F}/run --engine null --template padron-espanol-1930", 2, "was made with template"),
    ("synth --pages 0 --out {F}/s", 2, "Invalid value for '--pages'"),
    ("synth --pages -1 --out {F}/s", 2, "Invalid value for '--pages'"),
    ("synth --pages 1 --out {F}/file.txt", 2, "is an existing file, not a folder"),
    ("synth --pages 1 --out {F}/s --format gif", 2, "unknown format 'gif'"),
    ("synth --pages 1 --out {F}/s --template nope", 2, "template 'nope' not found"),
    ("synth --pages 1 --out {F}/s --style bad", 2, "--style expects KEY=VALUE"),
    ("synth --pages 1 --out {F}/s --style foo=1", 2, "unknown style override"),
    ("synth --pages 1 --out {F}/s --style noise_sigma=abc", 2, "bad style override value"),
    ("synth --pages 1 --out {F}/s --jpeg-quality 5", 2, "Invalid value for '--jpeg-quality'"),
    ("synth --pages 1 --out {F}/s --pages-per-file 0", 2, "Invalid value for '--pages-per-file'"),
    ("synth --pages 1 --out {F}/s --skew-max -1", 2, "skew must be within"),
    ("query {M} 'SELECT 1'", 2, "no store at"),
    ("query {F}/file.txt 'SELECT 1'", 2, "no store at"),
    ("query {F}/notarun 'SELECT 1'", 2, "no store at"),
    ("query {F}/corrupt 'SELECT 1'", 2, "is not a census store"),
    ("query {F}/run 'SELEC nonsense'", 2, "SQL error"),
    ("query {F}/run 'DROP TABLE persons'", 2, "read-only"),
    ("query {F}/run 'SELECT 1' --format nope", 2, "unknown format 'nope'"),
    ("search {M} Josep", 2, "no store at"),
    ("search {F}/corrupt Josep", 2, "is not a census store"),
    ("search {F}/run Josep --born abc", 2, "--born expects YEAR or YEAR-YEAR"),
    ("search {F}/run Josep --born 1890-1880", 2, "the range ends before it starts"),
    ("search {F}/run Josep --limit 0", 2, "Invalid value for '--limit'"),
    ("search {F}/run ''", 2, "empty search"),
    ("export {M} --format csv --out {F}/e", 2, "no store at"),
    ("export {F}/corrupt --format csv --out {F}/e", 2, "is not a census store"),
    ("export {F}/run --format nope --out {F}/e", 2, "unknown export format 'nope'"),
    ("export {F}/run --format csv --out {F}/file.txt", 2, "is an existing file, not a folder"),
    ("browse {M}", 2, "no store at"),
    ("browse {F}/run --port -1", 2, "Invalid value for '--port'"),
    ("browse {F}/run --port 70000", 2, "Invalid value for '--port'"),
    ("show {M} p", 2, "is not a run directory"),
    ("show {F}/file.txt p", 2, "is not a run directory"),
    ("show {F}/corrupt p", 2, "is not a census store"),
    ("show {F}/run nope-page", 2, "no page 'nope-page'"),
    ("show {F}/run ''", 2, "PAGE is empty"),
    ("report {M}", 2, "is not a run directory"),
    ("report {F}/notarun", 2, "is not a run directory"),
    ("report {F}/corrupt", 2, "is not a census store"),
    ("train --config {M}.yaml", 2, "training recipe not found"),
    ("train --config {F}/notarun", 2, "training recipe not found"),
    ("train --config {F}/bad.yaml", 2, "invalid training recipe"),
    ("train --config {F}/file.txt", 2, "invalid training recipe"),
    ("train --device nope", 2, "--device 'nope'"),
    ("train --from-corrections {M}", 2, "no store at"),
    ("calibrate {M}", 2, "not a folder"),
    ("calibrate {F}/file.txt", 2, "not a folder"),
    ("calibrate {F}/notarun", 2, "no ground-truth pages"),
    ("calibrate {F}/scans --model {M}.onnx", 2, "crnn model not found"),
    ("lm {M}", 2, "not a folder"),
    ("lm {F}/file.txt", 2, "not a folder"),
    ("lm --from-corrections {F}/notarun", 2, "no store at"),
    ("lm {F}/scans --model {M}.onnx", 2, "no charset for the model"),
    ("eval {M}", 2, "not a folder"),
    ("eval {F}/file.txt", 2, "not a folder"),
    ("eval {F}/notarun", 2, "no ground-truth pages"),
    ("eval {F}/notarun --tables", 2, "has a PAGE XML ground truth"),
    ("eval {F}/scans --engine nope", 2, "unknown engine 'nope'"),
    ("eval {F}/scans --tables --template nope", 2, "template 'nope' not found"),
    ("review push {F}/run --url {closed} --document-root {F}", 4, "Label Studio is not reachable"),
    ("review status {F}/run --url {closed}", 4, "Label Studio is not reachable"),
    ("review pull {F}/run --url {closed}", 2, "was never pushed"),
    ("review push {F}/run --data-dir {F}/notarun", 4, "no Label Studio server is running"),
    ("review nope", 2, "No such command 'nope'"),
    ("review serve --port -1", 2, "Invalid value for '--port'"),
    ("review serve --port 70000", 2, "Invalid value for '--port'"),
    ("review serve --data-dir {F}/file.txt --port 1", 2, "is an existing file, not a folder"),
    ("recalibrate {M}", 2, "no store at"),
    ("recalibrate {F}/notarun", 2, "no store at"),
    ("recalibrate {F}/corrupt", 2, "is not a census store"),
    ("adapt {M}", 2, "no store at"),
    ("adapt {F}/corrupt", 2, "is not a census store"),
    ("adapt {F}/run --minutes -1", 2, "Invalid value for '--minutes'"),
    ("adapt {F}/run", 2, "has 0 corrected cells; adapting needs"),
]


def test_every_command_is_swept() -> None:
    """Each command `census --help` lists has a bad-argument case here."""
    import typer.main

    commands = set(typer.main.get_command(app).commands)
    swept = {(case.values[0] if hasattr(case, "values") else case[0]).split()[0] for case in CASES}
    assert commands <= swept, commands - swept


@pytest.mark.parametrize("line, code, fragment", CASES)
def test_bad_arguments_end_with_a_clear_line_and_no_traceback(
    fx: dict[str, str], line: str, code: int, fragment: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import shlex

    monkeypatch.setenv("COLUMNS", "300")  # usage errors are boxed: no line wrapped inside the message
    monkeypatch.setenv("CENSUS_LS_DATA_DIR", str(tmp_path / "label-studio"))
    monkeypatch.setenv("CENSUS_LS_TOKEN", "not-a-token")  # so review commands go as far as the network
    monkeypatch.setattr(sys, "argv", ["census", *shlex.split(line.format(**fx))])
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    out, err = capsys.readouterr()
    assert exited.value.code == code, err
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert sum(line.startswith("error: ") for line in lines) <= 1, err
    assert any(fragment in line for line in lines), err
