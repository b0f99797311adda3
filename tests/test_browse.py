"""`census browse`: the masked datasette copy (FTS5, facets, crop links), served on 127.0.0.1
and rendered in headless Chromium; the screenshot is kept under test-artifacts/."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.dataset import datagen
from pipeline.dataset.browse import DB_NAME, FACETS, build_browse_db, datasette_command

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and quiet on this machine's closed network.
HEADLESS_CHROMIUM = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browse-run")
    datagen.generate_run(folder, pages=3, seed=17)
    (folder / "embargo.yaml").write_text("years: 100\ntoday: 2026-01-01\n", encoding="utf-8")
    return folder


def test_copy_has_fts_facet_columns_and_crop_links(run_dir: Path):
    path = build_browse_db(run_dir)
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(persons)")]
        assert set(FACETS) <= set(columns) and "crop" in columns
        surname = (
            connection.execute("SELECT name FROM persons WHERE name IS NOT NULL LIMIT 1")
            .fetchone()[0]
            .split()[-1]
        )
        found = connection.execute(
            "SELECT COUNT(*) FROM persons_fts WHERE persons_fts MATCH ?", (surname,)
        ).fetchone()
        assert found[0] >= 1
        crops = connection.execute("SELECT restricted, crop FROM persons").fetchall()
    assert all((crop is None) == bool(restricted) for restricted, crop in crops)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        return error.code, b"", ""


@pytest.fixture(scope="module")
def server(run_dir: Path):
    port = _free_port()
    process = subprocess.Popen(
        datasette_command(run_dir, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/-/versions.json", timeout=2).close()
            break
        except OSError:
            time.sleep(0.3)
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.server
def test_facets_search_and_crops_over_http(server: str):
    status, body, _ = _get(f"{server}/{DB_NAME}/persons.json?_facet=sex&_facet=relation&_size=1")
    data = json.loads(body)
    assert status == 200 and {"sex", "relation"} <= set(data["facet_results"])
    row = dict(zip(data["columns"], data["rows"][0]))
    surname = row["name"].split()[-1] if row["name"] else "Puig"
    status, body, _ = _get(
        f"{server}/{DB_NAME}/persons.json?_search={urllib.parse.quote(surname)}&_shape=array"
    )
    assert status == 200 and any(surname in (hit["name"] or "") for hit in json.loads(body))
    shown = json.loads(_get(f"{server}/{DB_NAME}/persons.json?_shape=array&restricted=0&_size=1")[1])[0]
    status, body, kind = _get(server + shown["crop"])
    assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
    hidden = json.loads(_get(f"{server}/{DB_NAME}/persons.json?_shape=array&restricted=1&_size=1")[1])[0]
    assert hidden["crop"] is None and hidden["name"] is None
    assert _get(f"{server}/-/crop/{urllib.parse.quote(hidden['person_id'])}")[0] == 404


@pytest.mark.server
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
def test_headless_chromium_renders_facets_and_crops(server: str, tmp_path: Path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browse-persons.png"
    shot.unlink(missing_ok=True)
    url = f"{server}/{DB_NAME}/persons?restricted=0&_facet_size=4"  # the metadata's facets, short
    done = subprocess.run(
        [
            *HEADLESS_CHROMIUM,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,1600",
            "--virtual-time-budget=5000",
            f"--screenshot={shot}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1400, 1600)
        assert len(set(image.convert("L").resize((140, 110)).getdata())) > 20  # a rendered page, not blank
    dom = subprocess.run(
        [
            *HEADLESS_CHROMIUM,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'alt="row crop"' in dom.stdout and "facet-results" in dom.stdout
