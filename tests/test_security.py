"""Security properties: YAML loaded safely, names from templates and inputs cannot reach outside
their folders, `census query` can neither write nor read outside the run, servers bind to
127.0.0.1 unless asked otherwise, and the Label Studio token never reaches a log or message.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.errors import ServiceError, UsageError
from pipeline.stages.templates import available_templates, load_template

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "pipeline", ROOT / "review"]


def python_files() -> list[Path]:
    return [path for package in PACKAGES for path in package.rglob("*.py")]


def shipped_template_text() -> str:
    return next(iter(available_templates().values())).read_text(encoding="utf-8")


# --- YAML ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/new:os.system",
        "!!python/name:os.system",
        "!!python/module:os",
    ],
)
def test_python_tags_in_a_template_are_rejected_and_never_run(tag: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f'{tag} ["touch {marker}"]' if "apply" in tag or "new" in tag else f"{tag} ''"
    template = tmp_path / "evil.yaml"
    text = shipped_template_text().replace("register_year: 1930", f"register_year: {payload}")
    template.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match="invalid template"):
        load_template(template)
    assert not marker.exists()


def _census_run(template: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(template.parent), "--out", str(out),
         "--template", str(template), "--engine", "null"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def test_a_template_repeating_a_key_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    lines = shipped_template_text().splitlines()
    at = next(index for index, line in enumerate(lines) if line.startswith("name:"))
    lines.insert(at + 1, "name: other-name")  # PyYAML alone would keep this one silently
    template = tmp_path / "twice.yaml"
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=rf"{re.escape(str(template))}, line {at + 2}: duplicate key 'name'"):
        load_template(template)
    nested = shipped_template_text().replace("    type: name\n", "    type: name\n    type: text\n", 1)
    template.write_text(nested, encoding="utf-8")
    with pytest.raises(UsageError, match="duplicate key 'type'"):  # inside a column too
        load_template(template)
    done = _census_run(template, tmp_path / "run")
    assert done.returncode == 2 and "duplicate key 'type'" in done.stderr and str(template) in done.stderr


def test_a_template_with_thousands_of_columns_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from pipeline.stages.templates import MAX_COLUMNS

    data = yaml.safe_load(shipped_template_text())
    data["columns"] = [dict(data["columns"][0], key=f"c{index}") for index in range(5000)]
    template = tmp_path / "wide.yaml"
    template.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = _census_run(template, tmp_path / "run")
    assert done.returncode == 2, done.stderr
    assert f"at most {MAX_COLUMNS} items" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "census.sqlite").exists()
    data["columns"] = data["columns"][:MAX_COLUMNS]  # the bound itself still loads
    template.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert len(load_template(template).columns) == MAX_COLUMNS


def test_no_module_loads_yaml_unsafely() -> None:
    """Every yaml.load in the code base names a safe loader; no unsafe_load/full_load/Loader=Loader."""
    offenders = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and (isinstance(node.func.value, ast.Name) and node.func.value.id == "yaml")
            ):
                loader = next((kw.value for kw in node.keywords if kw.arg == "Loader"), None)
                unsafe = node.func.attr in {"unsafe_load", "full_load", "unsafe_load_all", "full_load_all"}
                unsafe |= node.func.attr in {"load", "load_all"} and not (
                    isinstance(loader, ast.Attribute) and loader.attr in {"SafeLoader", "CSafeLoader"}
                )
                if unsafe:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


# --- names that could become paths ------------------------------------------------------------


def test_template_lexicon_cannot_name_a_file_outside_the_lexicons(tmp_path: Path) -> None:
    from pipeline.lexicons import LEXICONS_DIR, load_lexicon

    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me\n", encoding="utf-8")
    escape = os.path.relpath(secret.with_suffix(""), LEXICONS_DIR)
    assert (LEXICONS_DIR / f"{escape}.txt").resolve() == secret.resolve()  # the path would reach it
    with pytest.raises(UsageError, match="unknown lexicon"):
        load_lexicon(escape)
    data = yaml.safe_load(shipped_template_text())
    data["columns"][0]["lexicon"] = escape
    template = tmp_path / "escape.yaml"
    template.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(UsageError, match="unknown lexicon"):
        load_template(template)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run over a page whose file name is full of path and shell metacharacters."""
    from pipeline.run.batch import run
    from pipeline.run.runner import RunOptions
    from pipeline.synth import generate_pages

    made = tmp_path_factory.mktemp("made")
    page = next(p for p in generate_pages(made, 1, seed=41) if p.suffix == ".png")
    inputs = tmp_path_factory.mktemp("inputs")
    shutil.copy(page, inputs / "page ..;$(touch pwned)\n'\"..png")
    out = tmp_path_factory.mktemp("run") / "run"
    run([inputs], RunOptions(out=out, engine="null", workers=1), progress=False)
    return out


def test_input_names_never_become_output_paths(run_dir: Path) -> None:
    outside = [p for p in run_dir.parent.iterdir() if p != run_dir]
    assert outside == []
    generated = [p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()]
    per_page = [p for p in generated if p.parts[0] in {"pages", "images", "overlays"}]
    assert per_page and all(re.fullmatch(r"[0-9a-f]{16}-p\d+\.(json|jpg|png)", p.name) for p in per_page)
    assert not (Path.cwd() / "pwned").exists()


# --- census query ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '{outside}/leak.csv'",
        "COPY persons TO '{outside}/leak.parquet' (FORMAT parquet)",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_parquet('{run_dir}/../*/*.parquet')",
        "ATTACH '{outside}/other.duckdb' AS other",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "CREATE TABLE x AS SELECT 1",
        "SELECT 1; COPY (SELECT 1) TO '{outside}/leak2.csv'",
    ],
)
def test_query_cannot_write_or_read_outside_the_run(run_dir: Path, tmp_path: Path, sql: str) -> None:
    from pipeline.dataset.query import run_query

    with pytest.raises(UsageError):
        run_query(run_dir, sql.format(outside=tmp_path, run_dir=run_dir))
    assert list(tmp_path.iterdir()) == []


def test_query_reads_the_run(run_dir: Path) -> None:
    from pipeline.dataset.query import run_query

    assert run_query(run_dir, "SELECT COUNT(*) FROM pages").rows == [[1]]


# --- servers bind to 127.0.0.1 ----------------------------------------------------------------


def test_no_server_defaults_to_all_interfaces() -> None:
    """No '0.0.0.0' / '::' bind address anywhere in the code, and every --host option defaults to loopback."""
    wildcard = re.compile(r"""["'](0\.0\.0\.0|::)["']""")
    assert [
        f"{p.relative_to(ROOT)}" for p in python_files() if wildcard.search(p.read_text(encoding="utf-8"))
    ] == []
    import typer.main

    from pipeline.cli import app

    def commands(command, prefix=""):
        yield prefix, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, f"{prefix} {name}")

    hosts = [
        (name, param.default)
        for name, command in commands(typer.main.get_command(app))
        for param in command.params
        if param.name in {"host", "bind", "listen"}
    ]
    assert all(default in {"127.0.0.1", "localhost"} for _, default in hosts), hosts


def test_label_studio_and_browse_bind_loopback(run_dir: Path) -> None:
    import inspect

    from pipeline.dataset.browse import datasette_command
    from review import server

    assert server.HOST == "127.0.0.1"
    assert re.search(r'"--internal-host",\s*HOST', inspect.getsource(server.start))
    command = datasette_command(run_dir, free_port())
    assert command[command.index("--host") + 1] == "127.0.0.1"


def listening_addresses(pids: set[int]) -> set[str]:
    import psutil

    return {
        connection.laddr.ip
        for connection in psutil.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.pid in pids
    }


@pytest.mark.server
def test_dask_local_cluster_listens_on_loopback_only() -> None:
    import psutil

    from pipeline.run.distributed import local_cluster

    with local_cluster(1) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert all(address.startswith("tcp://127.0.0.1:") for address in cluster.scheduler.workers)
        me = psutil.Process()
        pids = {me.pid, *(child.pid for child in me.children(recursive=True))}
        addresses = listening_addresses(pids)
    assert addresses and addresses <= {"127.0.0.1"}, addresses


# --- the Label Studio token -------------------------------------------------------------------

TOKEN = "f00dfeedcafe" * 3 + "beef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_token_never_in_messages_or_logs(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """Every failure path of the client (unreachable server, then a server refusing the token)."""
    from http.server import BaseHTTPRequestHandler

    from review.client import ReviewClient

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "Invalid token."}')

        def log_message(self, *args: object) -> None:
            pass

    caplog.set_level(logging.DEBUG)
    messages = []
    for url, server in _urls_to_fail_on(Refuse):
        with pytest.raises(ServiceError) as caught:
            ReviewClient(url, TOKEN, timeout=5, retries=2).project_exists(1)
        messages.append(str(caught.value))
        if server is not None:
            server.shutdown()
    out, err = capfd.readouterr()
    everything = "\n".join([*messages, caplog.text, out, err])
    assert "rejected the API token" in everything and "not reachable" in everything
    assert TOKEN not in everything and TOKEN[:16] not in everything


def _urls_to_fail_on(handler: type):
    import threading
    from http.server import HTTPServer

    yield f"http://127.0.0.1:{free_port()}", None
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
