"""The run report: RUN_DIR/report.html, one self-contained file (inline CSS, images as data
URIs, no script, no network) telling an archivist at a glance what a run did: counts,
failures and their reasons, auto-accept rate, confidence histogram, throughput, and a
thumbnail of each page with its detected grid, cells coloured by status and each column labelled with the
field it was read as (coloured by how it was mapped: a wrong grid or mapping shows at a glance).

`render_overlay` draws that page overlay at full size; `census show RUN_DIR PAGE` writes it
as a PNG. Both paint over the masked cells of persons under the embargo (pipeline.dataset.embargo.redact)
before drawing, as exported page images do (`census show --include-restricted` keeps them). Everything is read from the store (current cell status, corrections included), the
per-page JSON results (grid, cell polygons, timings) and the saved page images.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.dataset import dataset, embargo
from pipeline.run import store
from pipeline.errors import UsageError
from pipeline.models import Failure, Grid, PageResult
from pipeline.stages.ingest import UNSUPPORTED

REPORT_NAME = "report.html"
MAX_THUMBNAILS = 200  # beyond this the report would weigh megabytes; `census show` draws any page
THUMBNAIL_WIDTH = 360
# Cell status -> BGR colour (OpenCV order), and the same as CSS for the legend.
STATUS_COLOURS: dict[str, tuple[int, int, int]] = {
    "accepted": (60, 170, 40),
    "needs_review": (0, 140, 255),
    "corrected": (220, 110, 20),
    "empty": (190, 190, 190),
    "illegible": (30, 30, 220),
}
GRID_COLOUR = (200, 0, 200)
FILL_ALPHA = 0.28
# How a column got its field (ColumnMapping.method; None: unmapped) -> the colour of its label, and in words.
COLUMN_COLOURS: dict[str | None, tuple[int, int, int]] = {
    "header": (60, 170, 40),
    "position": (0, 140, 255),
    "extra": (220, 110, 20),
    None: (30, 30, 220),
}
COLUMN_METHODS = {"header": "by its printed header", "position": "by position (header not read)",
                  "extra": "not in the template", None: "unmapped"}
MIN_LABEL_SCALE = 0.4  # OpenCV font scale under which a label's text is unreadable: its colour strip only


# --- page overlay -------------------------------------------------------------------------


def require_store(run_dir: Path) -> None:
    if not (Path(run_dir) / store.STORE_NAME).is_file():
        raise UsageError(f"{run_dir} is not a run directory (no {store.STORE_NAME}); run `census run` first")


def resolve_page(run_dir: Path, page: str) -> str:
    """A page id from an id, a unique id prefix, or an input file name (its first page)."""
    require_store(run_dir)
    if not page.strip():
        raise UsageError("PAGE is empty: give a page id, a prefix of one, or an input file name")
    with store.connect(run_dir, readonly=True) as connection:
        rows = connection.execute("SELECT page_id, source, page_index FROM pages ORDER BY source, page_index")
        pages = [(row["page_id"], row["source"], row["page_index"]) for row in rows]
    for matches in (
        [p for p in pages if p[0] == page],
        [p for p in pages if p[0].startswith(page)],
        [p for p in pages if Path(p[1]).name == page and p[2] == 0],
    ):
        if len(matches) == 1:
            return matches[0][0]
        if len(matches) > 1:
            raise UsageError(f"{page!r} matches {len(matches)} pages; give more of the page id")
    raise UsageError(f"no page {page!r} in {run_dir}; page ids are in the pages table and RUN_DIR/pages/")


def render_overlay(
    run_dir: Path, page_id: str, width: int | None = None, restricted_rows: Iterable[int] = ()
) -> np.ndarray:
    """The ingested page (BGR) with the detected grid and every cell tinted by its current status,
    drawn at `width` pixels wide (default: the page's own size); the masked cells of
    `restricted_rows` (persons under the embargo) are painted over first."""
    from pipeline.run.paths import page_image_path, page_json_path

    image = _read_page_image(page_image_path(run_dir, page_id), width)
    if image is None:
        raise UsageError(f"no saved image for page {page_id} (the page could not be read)")
    result_path = page_json_path(run_dir, page_id)
    hidden = dataset.page_hidden_boxes(run_dir, page_id, restricted_rows)
    boxes = [box for row_boxes in hidden.values() for box in row_boxes]
    if not result_path.exists():
        with store.connect(run_dir, readonly=True) as connection:
            stored = connection.execute("SELECT width FROM pages WHERE page_id = ?", (page_id,)).fetchone()
        return embargo.redact(image, boxes, scale=image.shape[1] / stored[0] if stored and stored[0] else 1.0)
    result = PageResult.model_validate_json(result_path.read_bytes())
    # Drawing happens at the output size: coordinates (original page pixels) are scaled to it.
    scale = image.shape[1] / result.page.width if result.page.width else 1.0
    embargo.redact(image, boxes, scale=scale)
    _tint_cells(image, result, _current_statuses(run_dir, page_id), scale)
    _draw_grid(image, result, scale)
    _label_columns(image, result, scale)
    return image


def column_labels(result: PageResult) -> list[tuple[str, str | None]]:
    """(field, how it was mapped) of each grid column, left to right: what a wrong mapping shows as."""
    if result.grid is None or result.columns is None:
        return []
    fields = [result.columns.fields.get(col) for col in range(len(result.grid.col_bounds) - 1)]
    return [(field, result.columns.method.get(col)) if field else ("unmapped", None)
            for col, field in enumerate(fields)]


def _label_columns(image: np.ndarray, result: PageResult, scale: float) -> None:
    """Each column's field written at the top of its header cell, on the colour of how it was mapped, so a
    column mapped to the wrong field, by position or not at all is seen at a glance."""
    if result.grid is None or result.preprocess is None:
        return
    affine = np.array(result.preprocess.to_original, dtype=np.float64)
    rows, cols = result.grid.row_bounds, result.grid.col_bounds
    for col, (field, method) in enumerate(column_labels(result)):
        corners = np.array([[cols[col], rows[0], 1.0], [cols[col + 1], rows[0], 1.0]]) @ affine.T * scale
        (x0, y0), (x1, _) = corners.astype(int)
        width = max(1, x1 - x0 - 4)
        (text_width, _), _ = cv2.getTextSize(field, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
        font_scale = min(0.9, (width - 6) / text_width)  # the field's name fits its column
        legible = font_scale >= MIN_LABEL_SCALE
        height = max(3, int(30 * font_scale)) if legible else max(3, image.shape[1] // 150)
        cv2.rectangle(image, (x0 + 2, y0 + 2), (x0 + 2 + width, y0 + 2 + height), COLUMN_COLOURS[method], -1)
        if legible:
            cv2.putText(image, field, (x0 + 5, y0 + height - max(2, height // 5)), cv2.FONT_HERSHEY_SIMPLEX,
                        font_scale, (255, 255, 255), max(1, round(2 * font_scale)), cv2.LINE_AA)


def _read_page_image(path: Path, width: int | None) -> np.ndarray | None:
    """Decode the JPEG straight at a reduced size when a thumbnail is wanted (much faster)."""
    from PIL import Image

    if width is None:
        return cv2.imread(str(path), cv2.IMREAD_COLOR)
    try:
        with Image.open(path) as page:
            height = max(1, round(page.height * width / page.width))
            if width >= page.width:
                width, height = page.size
            page.draft("RGB", (width, height))  # JPEG: decode at 1/2, 1/4 or 1/8 of the size, not less than asked
            image = cv2.cvtColor(np.asarray(page.convert("RGB")), cv2.COLOR_RGB2BGR)
    except OSError:  # missing or unreadable (PIL's UnidentifiedImageError is an OSError)
        return None
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _current_statuses(run_dir: Path, page_id: str) -> dict[str, str]:
    with store.connect(run_dir, readonly=True) as connection:
        rows = connection.execute("SELECT cell_id, status FROM cells WHERE page_id = ?", (page_id,))
        return {row["cell_id"]: row["status"] for row in rows}


def _tint_cells(image: np.ndarray, result: PageResult, statuses: dict[str, str], scale: float) -> None:
    overlay = image.copy()
    outlines = []
    for cell in result.cells:
        corners = cell.polygon or [
            (cell.bbox.x0, cell.bbox.y0),
            (cell.bbox.x1, cell.bbox.y0),
            (cell.bbox.x1, cell.bbox.y1),
            (cell.bbox.x0, cell.bbox.y1),
        ]
        polygon = np.round(np.array(corners, dtype=np.float64) * scale).astype(np.int32)
        colour = STATUS_COLOURS.get(statuses.get(cell.cell_id, cell.status), GRID_COLOUR)
        cv2.fillPoly(overlay, [polygon], colour)
        outlines.append((polygon, colour))
    cv2.addWeighted(overlay, FILL_ALPHA, image, 1 - FILL_ALPHA, 0, dst=image)
    thickness = max(1, image.shape[1] // 1200)
    for polygon, colour in outlines:
        cv2.polylines(image, [polygon], isClosed=True, color=colour, thickness=thickness)


def _draw_grid(image: np.ndarray, result: PageResult, scale: float) -> None:
    """Grid boundaries are in processed pixels: map their ends back to the original page. A header group's
    sub-column rules start under its title, where the title's cell ends, as they are printed; they stop
    across a cell written over them (`Grid.spans`), read as one."""
    if result.grid is None or result.preprocess is None:
        return
    affine = np.array(result.preprocess.to_original, dtype=np.float64)
    grid = result.grid
    rows, cols = grid.row_bounds, grid.col_bounds
    segments = ([((cols[0], y), (cols[-1], y)) for y in rows]
                + [((x, top), (x, bottom)) for index, x in enumerate(cols) for top, bottom in _rule_runs(grid, index)]
                + [((cols[group.first], group.bottom), (cols[group.last + 1], group.bottom))
                   for group in grid.header_groups])
    thickness = max(1, image.shape[1] // 800)
    for start, end in segments:
        ends = np.array([[*start, 1.0], [*end, 1.0]]) @ affine.T * scale
        cv2.line(
            image, tuple(int(v) for v in ends[0]), tuple(int(v) for v in ends[1]), GRID_COLOUR, thickness
        )


def _rule_runs(grid: Grid, index: int) -> list[tuple[int, int]]:
    """Where column rule `index` runs, top to bottom: from under its group's title, broken where a data row's
    cell is written across it."""
    rows = grid.row_bounds
    start = next((group.bottom for group in grid.header_groups if group.first < index <= group.last), rows[0])
    across = {grid.header_rows + span.row for span in grid.spans if span.first < index <= span.last}
    runs, top = [], start
    for row in sorted(across):
        if rows[row] > top:
            runs.append((top, rows[row]))
        top = rows[row + 1]
    return [*runs, (top, rows[-1])] if rows[-1] > top else runs


def restricted_rows(run_dir: Path) -> dict[str, set[int]]:
    """Rows of persons under the run's embargo, by page."""
    persons = dataset.load(run_dir, include_restricted=True, write_report=False).persons
    rows: dict[str, set[int]] = {}
    for page_id, row in embargo.restricted_rows(persons):
        rows.setdefault(page_id, set()).add(row)
    return rows


def write_overlay(run_dir: Path, page: str, out: Path | None = None, include_restricted: bool = False) -> Path:
    """`census show`: write PAGE's overlay as a PNG (default RUN_DIR/overlays/<page_id>.png)."""
    page_id = resolve_page(run_dir, page)
    out = out or run_dir / "overlays" / f"{page_id}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    hidden = set() if include_restricted else restricted_rows(run_dir).get(page_id, set())
    if not cv2.imwrite(str(out), render_overlay(run_dir, page_id, restricted_rows=hidden)):
        raise UsageError(f"cannot write {out}")
    return out


# --- figures gathered for the report --------------------------------------------------------


def gather(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, as plain data (also handy for tests and `--json` callers)."""
    require_store(run_dir)
    with store.connect(run_dir, readonly=True) as connection:
        counts = store.counts(connection)
        statuses = dict(connection.execute("SELECT status, COUNT(*) FROM cells GROUP BY status").fetchall())
        machine = dict(
            connection.execute(
                "SELECT machine_status, COUNT(*) FROM cells GROUP BY machine_status"
            ).fetchall()
        )
        confidence_bins = confidence_histogram(connection)
        pages = [
            dict(row)
            for row in connection.execute(
                "SELECT p.page_id, p.source, p.page_index, p.status, p.error, p.skew_deg, p.n_rows, p.n_cols, "
                "SUM(c.status = 'needs_review') AS review, COUNT(c.cell_id) AS cells "
                "FROM pages p LEFT JOIN cells c USING (page_id) GROUP BY p.page_id ORDER BY p.source, p.page_index"
            )
        ]
    failures = read_failures(run_dir)
    written = sum(n for status, n in machine.items() if status != "empty")
    return {
        "counts": counts,
        "cell_statuses": statuses,
        "failures": [f.model_dump() for f in failures],
        "failure_reasons": dict(Counter(f.reason for f in failures).most_common()),
        "auto_accept_pct": round(100 * machine.get("accepted", 0) / written, 1) if written else 0.0,
        "confidence_bins": confidence_bins,
        "pages": pages,
        "throughput": throughput(run_dir, pages),
    }


HISTOGRAM_BINS = 20


def confidence_histogram(connection: Any) -> list[int]:
    """Written cells per confidence bin of width 1/HISTOGRAM_BINS, counted in SQL (millions of cells)."""
    rows = connection.execute(
        f"SELECT MIN(CAST(confidence * {HISTOGRAM_BINS} AS INTEGER), {HISTOGRAM_BINS - 1}) AS bin, COUNT(*) "
        "FROM cells WHERE machine_status != 'empty' GROUP BY bin"
    )
    counts = [0] * HISTOGRAM_BINS
    for index, count in rows:
        counts[max(0, index)] += count
    return counts


def read_failures(run_dir: Path) -> list[Failure]:
    path = run_dir / "failures.jsonl"
    if not path.exists():
        return []
    return [
        Failure.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line
    ]


def throughput(run_dir: Path, pages: list[dict[str, Any]]) -> dict[str, Any]:
    """The last run's wall-clock figures and per-stage seconds (from RUN_DIR/summary.json, written
    at the end of each run); without it, stage seconds summed over the pages' results."""
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    stages = summary.get("stage_seconds") or _stage_seconds_from_results(run_dir, pages)
    return {
        "stage_seconds": {stage: round(seconds, 2) for stage, seconds in stages.items()},
        "seconds": summary.get("seconds"),
        "pages_per_minute": summary.get("pages_per_minute"),
        "pages_skipped": summary.get("pages_skipped"),
    }


def _stage_seconds_from_results(run_dir: Path, pages: list[dict[str, Any]]) -> dict[str, float]:
    from pipeline.run.paths import page_json_path

    stages: dict[str, float] = {}
    for page in pages:
        path = page_json_path(run_dir, page["page_id"])
        if path.exists():
            for stage, seconds in json.loads(path.read_bytes()).get("timings", {}).items():
                stages[stage] = stages.get(stage, 0.0) + seconds
    return stages


# --- HTML ------------------------------------------------------------------------------------


def write_report(run_dir: Path, summary: Any | None = None, max_thumbnails: int = MAX_THUMBNAILS) -> Path:
    """Write RUN_DIR/report.html (and RUN_DIR/summary.json from the run's summary, when given)."""
    from pipeline.run.paths import write_atomically

    run_dir = Path(run_dir)
    if summary is not None:
        write_atomically(run_dir / "summary.json", summary.model_dump_json(indent=1).encode())
    data = gather(run_dir)
    document = _page_html(run_dir, data, max_thumbnails)
    path = run_dir / REPORT_NAME
    write_atomically(path, document.encode("utf-8"))
    return path


def _page_html(run_dir: Path, data: dict[str, Any], max_thumbnails: int) -> str:
    counts = data["counts"]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Census run report</h1><p class=meta>{_e(str(run_dir.resolve()))} &middot; {generated}</p>",
        _counts_html(counts, data),
        _failures_html(data),
        _throughput_html(data["throughput"]),
        "<h2>Confidence of written cells</h2>" + _histogram_svg(data["confidence_bins"]),
        _thumbnails_html(run_dir, data["pages"], max_thumbnails),
    ]
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Census run report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>"
    )


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts_html(counts: dict[str, int], data: dict[str, Any]) -> str:
    skipped = sum(1 for f in data["failures"] if f["reason"] == UNSUPPORTED)
    plan_failures = sum(1 for f in data["failures"] if f["page_id"] is None) - skipped
    rows = [
        ["pages done", counts["pages"]],
        ["pages failed", counts["pages_failed"] + plan_failures],
        ["files skipped (format not read)", skipped],
        ["rows (persons)", counts["rows"]],
        ["cells", counts["cells"]],
    ]
    rows += [[f"cells {status.replace('_', ' ')}", n] for status, n in sorted(data["cell_statuses"].items())]
    rows += [
        ["auto-accepted (of written cells)", f"{data['auto_accept_pct']} %"],
        ["corrections", counts["corrections"]],
    ]
    legend = "".join(
        f"<span class=chip style='background:{_css(colour)}'></span>{_e(status)} "
        for status, colour in STATUS_COLOURS.items()
    )
    columns = "".join(
        f"<span class=chip style='background:{_css(colour)}'></span>{_e(COLUMN_METHODS[method])} "
        for method, colour in COLUMN_COLOURS.items()
    )
    return (f"<h2>Counts</h2>{_table(['', 'count'], rows)}<p class=legend>cells: {legend}</p>"
            f"<p class=legend>column labels, the field each column was read as: {columns}</p>")


def _css(bgr: tuple[int, int, int]) -> str:
    return f"rgb({bgr[2]},{bgr[1]},{bgr[0]})"


def _failures_html(data: dict[str, Any]) -> str:
    if not data["failures"]:
        return "<h2>Failures</h2><p>None.</p>"
    reasons = _table(["reason", "pages"], [[r, n] for r, n in data["failure_reasons"].items()])
    shown = data["failures"][:500]
    detail = _table(
        ["source", "page", "reason", "detail"],
        [
            [f["source"], "" if f["page_index"] is None else f["page_index"], f["reason"], f["detail"]]
            for f in shown
        ],
    )
    more = (
        f"<p>{len(data['failures']) - len(shown)} more in failures.jsonl</p>"
        if len(data["failures"]) > len(shown)
        else ""
    )
    return f"<h2>Failures</h2>{reasons}<details><summary>each failure</summary>{detail}{more}</details>"


def _throughput_html(figures: dict[str, Any]) -> str:
    rows = []
    if figures["seconds"] is not None:
        rows += [
            ["wall-clock seconds (last run)", figures["seconds"]],
            ["pages per minute (last run)", figures["pages_per_minute"]],
            ["pages already done by an earlier run", figures["pages_skipped"]],
        ]
    total = sum(figures["stage_seconds"].values()) or 1.0
    rows += [
        [f"stage: {stage}", f"{seconds} s ({100 * seconds / total:.0f} %)"]
        for stage, seconds in figures["stage_seconds"].items()
    ]
    return "<h2>Throughput</h2>" + (_table(["", ""], rows) if rows else "<p>No pages processed.</p>")


def _histogram_svg(bins: list[int]) -> str:
    """The confidence histogram as inline SVG (matplotlib; text kept as text, no external fonts)."""
    if not any(bins):
        return "<p>No written cells.</p>"
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(6, 2.4))
    axes = figure.subplots()
    width = 1 / len(bins)
    axes.bar([index * width for index in range(len(bins))], bins, width=width, align="edge", color="#3a7bd5")
    axes.set_xlim(0, 1)
    axes.set_xlabel("confidence")
    axes.set_ylabel("written cells")
    figure.tight_layout()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _thumbnails_html(run_dir: Path, pages: list[dict[str, Any]], max_thumbnails: int) -> str:
    from pipeline.run.paths import page_image_path

    figures = []
    restricted = restricted_rows(run_dir) if pages else {}
    for page in pages[:max_thumbnails]:
        parts = [f"{Path(page['source']).name} p{page['page_index']}", page["status"]]
        parts += [page["error"]] if page["error"] else []
        parts += [f"{page['review']} to review"] if page["review"] else []
        caption = " · ".join(_e(part) for part in parts) + _columns_caption(run_dir, page["page_id"])
        image = (
            f"<img alt='page {_e(page['page_id'])}' "
            f"src='{_thumbnail_uri(run_dir, page['page_id'], restricted.get(page['page_id'], set()))}'>"
            if page_image_path(run_dir, page["page_id"]).exists()
            else "<div class=noimg>no image</div>"
        )
        figures.append(
            f"<figure>{image}<figcaption title='{_e(page['page_id'])}'>{caption}</figcaption></figure>"
        )
    more = (
        f"<p>{len(pages) - max_thumbnails} more pages: <code>census show RUN_DIR PAGE</code> draws any page.</p>"
        if len(pages) > max_thumbnails
        else ""
    )
    return f"<h2>Pages</h2><div class=pages>{''.join(figures)}</div>{more}"


def _columns_caption(run_dir: Path, page_id: str) -> str:
    """The page's columns as mapped, those not found by their printed header said so, and text-line rows."""
    from pipeline.run.paths import page_json_path

    path = page_json_path(run_dir, page_id)
    if not path.exists():
        return ""
    result = PageResult.model_validate_json(path.read_bytes())
    labels = [_e(field) if method == "header" else f"<b>{_e(field)}</b>" if method is None
              else f"<b>{_e(field)}</b> ({COLUMN_METHODS[method]})" for field, method in column_labels(result)]
    rows = " · rows from the text lines (no row rules)" if result.grid and result.grid.rows_from_text else ""
    return f"<br>columns: {' | '.join(labels)}{rows}" if labels else ""


def _thumbnail_uri(run_dir: Path, page_id: str, restricted: set[int]) -> str:
    small = render_overlay(run_dir, page_id, width=THUMBNAIL_WIDTH, restricted_rows=restricted)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode() if ok else ""


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{margin-bottom:0}.meta{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
.chip{display:inline-block;width:.9em;height:.9em;margin:0 .2em 0 .8em;vertical-align:middle}
.pages{display:flex;flex-wrap:wrap;gap:.8em}figure{margin:0;width:360px}
figure img{width:360px;border:1px solid #ccc}figcaption{font-size:.8em;color:#444;word-break:break-all}
.noimg{width:360px;height:120px;background:#eee;display:flex;align-items:center;justify-content:center}
"""
