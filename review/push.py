"""Push a run's review queue to a Label Studio project, idempotently.

One task per cell, keyed by its cell id (`data.cell_id`). Pushing again reads the project
back through the export API and only imports cells it does not hold yet; a cell whose
machine reading changed (re-recognised by a newer model) gets its task data and prediction
replaced, never a second task. Review order: key fields (names, ages, relations) first, then
by rising confidence; tasks are imported in that order and the project's first tab sorts by
`data.priority`, so the label stream starts with the most valuable fixes, also after re-pushes. The project used for each server URL is remembered in the store's meta
table.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from pipeline.dataset import dataset, embargo
from pipeline.run import store
from pipeline.errors import ServiceError, UsageError
from pipeline.stages.templates import Template
from review import crops
from review.client import ProjectGone, ReviewClient

LABEL_CONFIG_PATH = Path(__file__).with_name("labeling_config.xml")
IMPORT_BATCH = 2000  # tasks per import request: well under Label Studio's 200 MB limit
READING = {"from_name": "reading", "to_name": "crop", "type": "textarea"}


class PushSummary(BaseModel):
    url: str
    project: int
    queue: int  # cells waiting for review in the store
    created: int  # new tasks
    updated: int  # tasks whose prediction was replaced by a newer reading
    unchanged: int
    skipped: int  # cells whose page image is missing
    seconds: float


def label_config() -> str:
    return LABEL_CONFIG_PATH.read_text(encoding="utf-8")


def project_key(url: str) -> str:
    return f"review_project:{url}"


def remembered_project(connection: Any, url: str) -> int | None:
    row = connection.execute("SELECT value FROM meta WHERE key = ?", (project_key(url),)).fetchone()
    return int(row[0]) if row else None


def remember_project(connection: Any, url: str, project: int) -> None:
    with connection:
        connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (project_key(url), str(project)))


def priority(cell: dict, template: Template) -> float:
    """Review priority, lowest first and comparable across pushes: key fields (in [0, 1)) before
    the others (in [1, 2)), each by rising confidence."""
    key_field = cell["field"] is not None and template.column(cell["field"]).key_field
    return round((0.0 if key_field else 1.0) + min(max(cell["confidence"], 0.0), 0.9999), 4)


def review_order(cell: dict, template: Template) -> tuple:
    return (priority(cell, template), cell["page_id"], cell["row"], cell["col"])


def queued_cells(connection: Any, template: Template) -> list[dict]:
    rows = connection.execute(
        "SELECT cell_id, page_id, row, col, field, machine_text, confidence, reasons, x0, y0, x1, y1, engine, model, "
        "(SELECT COUNT(*) FROM cells copy WHERE copy.value_from = q.cell_id) AS copies "
        "FROM review_queue q").fetchall()
    return sorted((dict(row) for row in rows), key=lambda cell: review_order(cell, template))


def row_boxes(connection: Any, page_ids: set[str]) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    """Bounding box of every row of these pages (the union of its cells)."""
    boxes = {}
    for page_id in page_ids:
        for row in connection.execute(
                "SELECT row, MIN(x0), MIN(y0), MAX(x1), MAX(y1) FROM cells WHERE page_id = ? GROUP BY row",
                (page_id,)):
            boxes[(page_id, row[0])] = tuple(row[1:])
    return boxes


def model_version(cell: dict) -> str:
    return f"{cell['engine']}:{cell['model']}" if cell["model"] else cell["engine"] or "unknown"


def local_url(path: Path, document_root: Path) -> str:
    return "/data/local-files/?d=" + quote(path.relative_to(document_root).as_posix())


def task_data(cell: dict, template: Template, run_dir: Path, document_root: Path) -> dict:
    """What the labeling interface shows for one cell (and the keys push compares next time)."""
    column = template.column(cell["field"]) if cell["field"] else None
    label = f"{column.label} — {column.type}{' · key field' if column.key_field else ''}" if column else "unmapped"
    reasons = ", ".join(json.loads(cell["reasons"])) or "low confidence"
    return {
        "cell_id": cell["cell_id"], "page_id": cell["page_id"], "row": cell["row"], "col": cell["col"],
        "field": cell["field"] or "", "field_type": column.type if column else "",
        "column_label": label,
        "context": (f"Flagged: {reasons} · machine confidence {cell['confidence']:.2f} · "
                    f"page {cell['page_id']}, row {cell['row'] + 1}{copied_below(cell['copies'])}"),
        "crop": local_url(crops.crop_path(run_dir, cell["cell_id"]), document_root),
        "row_strip": local_url(crops.row_strip_path(run_dir, cell["page_id"], cell["row"]), document_root),
        "machine_text": cell["machine_text"], "model_version": model_version(cell),
        "confidence": round(cell["confidence"], 4), "priority": priority(cell, template),
    }


def copied_below(copies: int) -> str:
    """Ditto marks below take this cell's value: the correction settles theirs too."""
    return f" · its value is copied by {copies} ditto mark{'s' if copies > 1 else ''} below" if copies else ""


def prediction(cell: dict) -> dict:
    """The machine reading, prefilled in the editor; its score is the calibrated confidence."""
    text = cell["machine_text"]
    result = [{**READING, "value": {"text": [text]}}] if text else []
    return {"model_version": model_version(cell), "score": round(cell["confidence"], 4), "result": result}


def reading_changed(existing: dict, cell: dict) -> bool:
    return (existing.get("machine_text") != cell["machine_text"]
            or existing.get("model_version") != model_version(cell)
            or existing.get("confidence") != round(cell["confidence"], 4))


def existing_tasks(client: ReviewClient, project: int) -> dict[str, tuple[int, dict]]:
    """cell id -> (task id, task data) of every task in the project."""
    return {task["data"]["cell_id"]: (int(task["id"]), task["data"])
            for task in client.export(project, all_tasks=True) if "cell_id" in task.get("data", {})}


def choose_project(client: ReviewClient, connection: Any, run_dir: Path, project: int | None,
                   new_project: bool) -> int:
    """The explicit --project, else the one this run was pushed to before, else a new one."""
    remembered = project or (None if new_project else remembered_project(connection, client.url))
    if remembered is not None:
        if not client.project_exists(remembered):
            raise ProjectGone(
                f"Label Studio project {remembered} no longer exists at {client.url}; corrections already "
                f"pulled are safe in the store. Run `census review push {run_dir} --new-project` to push "
                "the queue to a new project")
        chosen = remembered
    else:
        chosen = client.create_project(f"census {run_dir.name}"[:50], label_config(),
                                       f"Cell review for run {run_dir}")
    remember_project(connection, client.url, chosen)
    return chosen


def check_document_root(run_dir: Path, document_root: Path) -> None:
    if not run_dir.is_relative_to(document_root):
        raise ServiceError(
            f"{run_dir} is outside the server's local-files document root {document_root}, so its crops "
            "cannot be served; run `census review stop` then `census review serve --document-root "
            f"{run_dir.parent}`")


def import_new(client: ReviewClient, project: int, tasks: list[dict]) -> int:
    created = 0
    for start in range(0, len(tasks), IMPORT_BATCH):
        batch = tasks[start:start + IMPORT_BATCH]
        created += len(client.import_tasks(project, batch))
        print(f"review push: {start + len(batch)}/{len(tasks)} tasks imported", file=sys.stderr)
    return created


def push(run_dir: Path, client: ReviewClient, document_root: Path, project: int | None = None,
         new_project: bool = False) -> PushSummary:
    """Push the run's review queue; safe to repeat (see the module docstring)."""
    began = time.monotonic()
    run_dir, document_root = Path(run_dir).resolve(), Path(document_root).resolve()
    if not (run_dir / store.STORE_NAME).is_file():
        raise UsageError(f"no store at {run_dir / store.STORE_NAME}: run `census run ... --out {run_dir}` first")
    check_document_root(run_dir, document_root)
    with store.connect(run_dir) as connection:
        template = store.stored_template(connection)
        queue = queued_cells(connection, template)
        chosen = choose_project(client, connection, run_dir, project, new_project)
        (run_dir / "review").mkdir(exist_ok=True)
        client.ensure_local_storage(chosen, str(run_dir / "review"))
        existing = existing_tasks(client, chosen)
        shown = crops.page_images_present(run_dir, {cell["page_id"] for cell in queue})
        fresh = [cell for cell in queue if cell["cell_id"] not in existing and cell["page_id"] in shown]
        stale = [cell for cell in queue if cell["cell_id"] in existing and cell["page_id"] in shown
                 and reading_changed(existing[cell["cell_id"]][1], cell)]
        rows = row_boxes(connection, {cell["page_id"] for cell in fresh + stale})
    restricted = embargo.restricted_rows(
        dataset.load(run_dir, include_restricted=True, write_report=False).persons
    ) if fresh or stale else set()

    def data(cell: dict) -> dict:
        return task_data(cell, template, run_dir, document_root)

    # Task URLs are known in advance: cut the crops while Label Studio imports the tasks.
    with ThreadPoolExecutor(max_workers=1) as background:
        writing = background.submit(crops.write_cell_images, run_dir, fresh + stale, rows, restricted)
        created = import_new(client, chosen, [{"data": data(cell), "predictions": [prediction(cell)]}
                                              for cell in fresh])
        for cell in stale:
            client.replace_prediction(existing[cell["cell_id"]][0], data(cell), prediction(cell))
        writing.result()
    unchanged = sum(1 for cell in queue if cell["cell_id"] in existing) - len(stale)
    return PushSummary(url=client.url, project=chosen, queue=len(queue), created=created, updated=len(stale),
                       unchanged=unchanged, skipped=len(queue) - len(fresh) - len(stale) - unchanged,
                       seconds=round(time.monotonic() - began, 2))


def document_root_for(url: str | None, data_dir: Path | None, explicit: Path | None) -> Path:
    """The local-files document root of the target server: given, or the one `serve` recorded."""
    from review import server

    if explicit is not None:
        return Path(explicit).resolve()
    running = server.running(data_dir)
    if running is not None and url in (None, running.url):
        return Path(running.document_root)
    raise UsageError("pass --document-root: the LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT the server at "
                     f"{url} was started with")


class ReviewStatus(BaseModel):
    url: str
    project: int | None
    queue: int  # cells still needing review in the store
    pushed: int  # tasks in the project
    done: int  # tasks with at least one annotation
    pending: int
    corrections: int  # corrections rows pulled from Label Studio


def status(run_dir: Path, client: ReviewClient, project: int | None = None) -> ReviewStatus:
    with store.connect(Path(run_dir), readonly=True) as connection:
        chosen = project or remembered_project(connection, client.url)
        queue = store.counts(connection)["review_queue"]
        corrections = connection.execute(
            "SELECT COUNT(*) FROM corrections WHERE source = 'label-studio'").fetchone()[0]
    pushed = done = 0
    client.check()
    if chosen is not None:
        pushed, done = client.project_counts(chosen)
    return ReviewStatus(url=client.url, project=chosen, queue=queue, pushed=pushed, done=done,
                        pending=pushed - done, corrections=corrections)
