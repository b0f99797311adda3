"""Review round-trip benchmark (`make bench` calls `python -m review.bench`).

Builds a run whose review queue holds N cells (rendered register pages, so crops are real),
starts Label Studio, then times: push of the N cells, and pull of N annotations (created
with Label Studio's bulk "accept predictions" action, as a reviewer would). Prints one JSON object on stdout.

`make_review_run` is also the fixture of the review tests: a small run with known texts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pipeline.run import store
from pipeline.models import BBox, Cell, PageInfo, PageResult, Person
from pipeline.stages.templates import load_template

TEMPLATE = "padro-catala-1930"
FIELDS = ["name", "relation", "sex", "age", "birth_place"]
SAMPLE_TEXTS = {
    "name": ["Josep Puig Serra", "Maria Vila Pons", "Joan Roca Soler", "Montserrat Camps", "Pere Font Mas"],
    "relation": ["cap", "muller", "fill", "filla", "germà"],
    "sex": ["H", "D", "H", "D", "H"],
    "age": ["42", "38", "12", "9", "35"],
    "birth_place": ["Girona", "Vic", "Manresa", "Reus", "Olot"],
}
COLUMN_WIDTHS = [420, 200, 90, 90, 260]
ROW_HEIGHT = 60
HEADER_HEIGHT = 70
MARGIN = 40


def page_id_of(index: int) -> str:
    return f"{index:016x}-p0"


def cell_box(row: int, col: int) -> BBox:
    x0 = MARGIN + sum(COLUMN_WIDTHS[:col])
    y0 = MARGIN + HEADER_HEIGHT + row * ROW_HEIGHT
    return BBox(x0=x0, y0=y0, x1=x0 + COLUMN_WIDTHS[col], y1=y0 + ROW_HEIGHT)


def render_page(texts: list[list[str]], path: Path) -> tuple[int, int]:
    """A ruled register page with `texts[row][col]` written in it; returns (width, height)."""
    from PIL import Image, ImageDraw, ImageFont

    width = 2 * MARGIN + sum(COLUMN_WIDTHS)
    height = 2 * MARGIN + HEADER_HEIGHT + len(texts) * ROW_HEIGHT
    image = Image.new("L", (width, height), 235)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("DejaVuSans.ttf", 30)
    for col, key in enumerate(FIELDS):
        draw.text((cell_box(0, col).x0 + 8, MARGIN + 20), key, fill=40, font=font)
    for row, row_texts in enumerate(texts):
        for col, text in enumerate(row_texts):
            box = cell_box(row, col)
            draw.rectangle((box.x0, box.y0, box.x1, box.y1), outline=90, width=2)
            draw.text((box.x0 + 10, box.y0 + 12), text, fill=20, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90)
    return width, height


def page_result(index: int, rows: int, confidence_of, status_of, model: str) -> tuple[PageResult, list[list[str]]]:
    """One page's cells (texts from SAMPLE_TEXTS) and person rows."""
    page_id = page_id_of(index)
    texts = [[SAMPLE_TEXTS[key][(row + index) % 5] for key in FIELDS] for row in range(rows)]
    cells, persons = [], []
    for row in range(rows):
        row_cells = []
        for col, key in enumerate(FIELDS):
            row_cells.append(Cell(
                cell_id=f"{page_id}:r{row}:c{col}", page_id=page_id, row=row, col=col, field=key,
                text=texts[row][col], value=texts[row][col], confidence=confidence_of(row, col),
                status=status_of(row, col), reasons=["low-confidence"] if status_of(row, col) == "needs_review"
                else [], bbox=cell_box(row, col), engine="bench", model=model))
        cells += row_cells
        persons.append(Person(page_id=page_id, row=row, values={cell.field: cell.text for cell in row_cells},
                              cell_ids={cell.field: cell.cell_id for cell in row_cells}))
    info = PageInfo(page_id=page_id, source=f"/bench/page{index}.jpg", page_index=0, width=0, height=0)
    return PageResult(page=info, template=TEMPLATE, cells=cells, persons=persons), texts


def default_confidence(row: int, col: int) -> float:
    return round(0.3 + 0.05 * ((row * 7 + col * 3) % 12), 2)


def half_review(row: int, col: int) -> bool:
    """Which cells need review when not all do: a checkerboard."""
    return (row + col) % 2 == 0


def make_review_run(run_dir: Path, pages: int, rows: int, all_review: bool = True, model: str = "v1") -> int:
    """A run with rendered pages whose cells (all, or every other one) need review; returns the queue size."""
    template = load_template(TEMPLATE)
    run_dir.mkdir(parents=True, exist_ok=True)
    with store.connect(run_dir) as connection:
        store.create(connection, template)
        for index in range(pages):
            result, texts = page_result(
                index, rows, confidence_of=default_confidence,
                status_of=lambda row, col: "needs_review" if all_review or half_review(row, col) else "accepted",
                model=model)
            width, height = render_page(texts, run_dir / "images" / f"{result.page.page_id}.jpg")
            result.page.width, result.page.height = width, height
            store.write_page(connection, result, template)
        return store.counts(connection)["review_queue"]


def reading_result(text: str) -> list[dict]:
    return [{"from_name": "reading", "to_name": "crop", "type": "textarea", "value": {"text": [text]}}]


def run_bench(cells: int, port: int, keep: Path | None) -> dict:
    from review import pull, push, server
    from review.client import ReviewClient

    base = keep or Path(tempfile.mkdtemp(prefix="census-review-bench-"))
    run_dir = base / "run"
    rows = 20
    queue = make_review_run(run_dir, pages=max(1, cells // (rows * len(FIELDS))), rows=rows)
    info = server.start(base / "label-studio", port=port, document_root=base)
    try:
        client = ReviewClient(info.url, server.read_token(Path(info.data_dir)))
        pushed = push.push(run_dir, client, Path(info.document_root))
        began = time.monotonic()
        # Creating 10,000 annotations one API call at a time runs at a few per second here, so the
        # reviewer's bulk action (accept the machine readings) creates them.
        client.accept_predictions(pushed.project)
        annotate_seconds = time.monotonic() - began
        pulled = pull.pull(run_dir, client)
        repushed, repulled = push.push(run_dir, client, Path(info.document_root)), pull.pull(run_dir, client)
        return {"repush_seconds": repushed.seconds, "repush_created": repushed.created,
                "repull_seconds": repulled.seconds, "repull_inserted": repulled.inserted,"cells": queue, "push_seconds": pushed.seconds, "tasks_created": pushed.created,
                "annotations_created": pulled.annotations, "annotate_seconds": round(annotate_seconds, 1),
                "pull_seconds": pulled.seconds, "corrections_inserted": pulled.inserted,
                "bar_seconds": 60, "ok": pushed.seconds <= 60 and pulled.seconds <= 60}
    finally:
        server.stop(Path(info.data_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    arguments = parser.parse_args()
    result = run_bench(arguments.cells, arguments.port, arguments.keep)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
