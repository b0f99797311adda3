"""A batch made of hostile and odd inputs finishes, and each file gets its defined outcome:
processed like the clean page it was made from, or failed with a specific reason in
failures.jsonl. Never a crash of the batch. (Ingest's own reasons are unit-tested in
test_ingest.py; this is the end-to-end batch through `census run`.)
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from badfiles import minimal_pdf, png_bomb
from pipeline.errors import ExitCode

DONE = "done"
# file name -> the outcome it must have
EXPECTED = {
    "clean.png": DONE,
    "zero-byte.png": "empty-file",
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "truncated.tif": "truncated",
    "tiff-named.png": DONE,  # wrong extension: the format comes from the bytes
    "text-named.tif": "not-an-image",
    "no-pages.pdf": "pdf-no-pages",
    "encrypted.pdf": "pdf-encrypted",
    "bomb-100k.png": "decompression-bomb",
    "cmyk.jpg": DONE,
    "sixteen-bit.png": DONE,
    "palette.png": DONE,
    "alpha.png": DONE,
    "exif-rotated.jpg": DONE,
    "upside-down.png": DONE,
    "tiny.png": "too-small",
    "all-white.png": "no-table",
    "no-table.png": "no-table",
}


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def text_without_table(width: int = 2000, height: int = 1400) -> np.ndarray:
    page = np.full((height, width), 235, np.uint8)
    for line in range(12):
        cv2.putText(
            page,
            "Ajuntament de Barcelona - padro municipal, full de familia",
            (120, 150 + 90 * line),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.4,
            30,
            3,
        )
    return page


def hostile_files(clean: Path) -> dict[str, bytes]:
    page = Image.open(clean).convert("L")
    grey = np.asarray(page)
    png = clean.read_bytes()
    jpeg = encoded(page, "JPEG", quality=90)
    tiff = encoded(page, "TIFF", compression="tiff_deflate")
    rgba = np.dstack([grey] * 3 + [np.full_like(grey, 255)])
    rgba[:, :40, 3] = 0  # a transparent margin, as left by some scanning software
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter; the viewer must rotate it 90° clockwise
    pdf_key = "ab" * 32
    return {
        "clean.png": png,
        "zero-byte.png": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "truncated.tif": tiff[: len(tiff) // 3],
        "tiff-named.png": tiff,
        "text-named.tif": b"Padro municipal d'habitants, 1930\n" * 20,
        "no-pages.pdf": minimal_pdf(
            ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 0 >>"]
        ),
        "encrypted.pdf": minimal_pdf(
            [
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
                f"<< /Filter /Standard /V 1 /R 2 /O <{pdf_key}> /U <{pdf_key}> /P -4 >>",
            ],
            f"/Encrypt 4 0 R /ID [<{pdf_key[:32]}><{pdf_key[:32]}>] ",
        ),
        "bomb-100k.png": png_bomb(100_000, 100_000),
        "cmyk.jpg": encoded(page.convert("CMYK"), "JPEG", quality=92),
        "sixteen-bit.png": encoded(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "palette.png": encoded(page.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG"),
        "alpha.png": encoded(Image.fromarray(rgba, mode="RGBA"), "PNG"),
        "exif-rotated.jpg": encoded(page.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif),
        "upside-down.png": encoded(page.transpose(Image.Transpose.ROTATE_180), "PNG"),
        "tiny.png": encoded(page.resize((120, 80)), "PNG"),
        "all-white.png": encoded(Image.new("L", (2000, 1400), 255), "PNG"),
        "no-table.png": encoded(Image.fromarray(text_without_table()), "PNG"),
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """Every hostile file in one folder, run as one batch."""
    from pipeline.synth import generate_pages

    source = tmp_path_factory.mktemp("source")
    clean = next(p for p in generate_pages(source, 1, seed=5) if p.suffix == ".png")
    folder = tmp_path_factory.mktemp("hostile")
    for name, data in hostile_files(clean).items():
        (folder / name).write_bytes(data)
    run_dir = tmp_path_factory.mktemp("run") / "run"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            str(folder),
            "--out",
            str(run_dir),
            "--engine",
            "null",
            "--json",
        ],
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        capture_output=True,
        timeout=900,
    )
    return completed, run_dir


def outcomes(run_dir: Path) -> dict[str, str]:
    """File name -> 'done' or its failure reason, from the store and failures.jsonl."""
    result = {}
    for line in (run_dir / "failures.jsonl").read_text().splitlines():
        failure = json.loads(line)
        result[Path(failure["source"]).name] = failure["reason"]
    connection = sqlite3.connect(run_dir / "census.sqlite")
    try:
        for source, status in connection.execute("SELECT source, status FROM pages WHERE status = 'done'"):
            result[Path(source).name] = status
    finally:
        connection.close()
    return result


def page_shape(run_dir: Path, name: str) -> tuple[int, int, int]:
    """(data rows, columns, persons) found on the page made from `name`."""
    connection = sqlite3.connect(run_dir / "census.sqlite")
    try:
        row = connection.execute(
            "SELECT p.n_rows, p.n_cols, (SELECT COUNT(*) FROM persons WHERE page_id = p.page_id) "
            "FROM pages p WHERE p.source LIKE ?",
            (f"%/{name}",),
        ).fetchone()
    finally:
        connection.close()
    return tuple(row)


def test_batch_finishes_with_failed_pages_exit_code(batch: tuple[subprocess.CompletedProcess, Path]) -> None:
    completed, run_dir = batch
    assert completed.returncode == ExitCode.PAGES_FAILED, completed.stderr.decode()[-3000:]
    summary = json.loads(completed.stdout)
    n_done = sum(1 for outcome in EXPECTED.values() if outcome == DONE)
    assert (summary["pages"], summary["failures"]) == (n_done, len(EXPECTED) - n_done)
    assert (run_dir / "report.html").exists()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_has_its_defined_outcome(
    batch: tuple[subprocess.CompletedProcess, Path], name: str
) -> None:
    _, run_dir = batch
    assert outcomes(run_dir).get(name) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(name for name, outcome in EXPECTED.items() if outcome == DONE))
def test_processed_variants_read_like_the_clean_page(
    batch: tuple[subprocess.CompletedProcess, Path], name: str
) -> None:
    _, run_dir = batch
    assert page_shape(run_dir, name) == page_shape(run_dir, "clean.png")
