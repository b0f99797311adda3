"""Pull reviewers' annotations from Label Studio into the run's store, with an audit trail.

Annotations come through the export API. Each becomes one append-only `corrections` row
keyed by (source, annotation id, annotation update time), so pulling again inserts nothing,
an annotation edited later adds a second row (history kept, latest wins), and a pull killed
half-way loses nothing: batches are single transactions and the next pull inserts what is
missing. Every page that received a correction gets its cells' current text and status
re-overlaid, its typed values, person rows and households re-derived, in the same transaction.
Then the run's calibration is refitted on its reviewed cells and the cells no reviewer answered are routed
again with it (`pipeline.run.recalibrate`; it keeps the shipped calibration until there are enough).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.run import store
from pipeline.run.recalibrate import Recalibration, recalibrate
from pipeline.errors import UsageError
from pipeline.stages.templates import Template
from review.client import ReviewClient
from review.push import remembered_project

SOURCE = "label-studio"
BATCH = 500  # annotations per transaction


class Correction(BaseModel):
    cell_id: str
    new_value: str
    new_status: str  # corrected | empty | illegible
    reviewer: str
    corrected_at: str
    annotation_id: str


class PullSummary(BaseModel):
    url: str
    project: int
    annotations: int  # usable annotations found in the project
    inserted: int  # new corrections rows
    unknown_cells: int  # annotations of cells this run does not have
    pages_recomputed: int
    recalibration: Recalibration
    seconds: float


def annotation_key(project: int, annotation_id: int) -> str:
    """Annotation ids restart on a new server or project: qualify them by project."""
    return f"p{project}-a{annotation_id}"


def parse_result(result: list[dict]) -> tuple[str, str]:
    """(new text, new status) from one annotation's result."""
    text, verdict = "", None
    for region in result:
        value = region.get("value", {})
        if region.get("from_name") == "reading":
            text = "\n".join(value.get("text", [])).strip()
        elif region.get("from_name") == "verdict" and value.get("choices"):
            verdict = value["choices"][0]
    if verdict in ("illegible", "empty"):
        return "", verdict
    return (text, "corrected") if text else ("", "empty")


def corrections_of(tasks: list[dict], project: int, reviewers: dict[int, str]) -> list[Correction]:
    """Every submitted (not skipped) annotation of the exported tasks."""
    found = []
    for task in tasks:
        cell_id = task.get("data", {}).get("cell_id")
        for annotation in task.get("annotations", []):
            if cell_id is None or annotation.get("was_cancelled"):
                continue
            text, status = parse_result(annotation.get("result", []))
            author = annotation.get("completed_by")
            author_id = author.get("id") if isinstance(author, dict) else author
            found.append(Correction(
                cell_id=cell_id, new_value=text, new_status=status,
                reviewer=reviewers.get(author_id, str(author_id)),
                corrected_at=annotation.get("updated_at") or annotation["created_at"],
                annotation_id=annotation_key(project, annotation["id"])))
    # Grouped by cell (hence by page: batches recompute few pages), each cell's history oldest first.
    return sorted(found, key=lambda correction: (correction.cell_id, correction.corrected_at))


def insert_correction(connection: Any, correction: Correction) -> str | None:
    """Append one correction unless already there; the page id it touched, else None."""
    current = connection.execute("SELECT page_id, text FROM cells WHERE cell_id = ?",
                                 (correction.cell_id,)).fetchone()
    if current is None:
        return None
    inserted = connection.execute(
        "INSERT OR IGNORE INTO corrections (cell_id, old_value, new_value, new_status, reviewer, corrected_at, "
        "source, annotation_id) VALUES (?,?,?,?,?,?,?,?)",
        (correction.cell_id, current["text"], correction.new_value, correction.new_status, correction.reviewer,
         correction.corrected_at, SOURCE, correction.annotation_id)).rowcount
    return current["page_id"] if inserted else None


def apply_batch(connection: Any, batch: list[Correction], template: Template) -> tuple[int, set[str]]:
    """One transaction: append the batch's new corrections, recompute the pages they touched."""
    with connection:
        touched = [insert_correction(connection, correction) for correction in batch]
        pages = {page_id for page_id in touched if page_id}
        for page_id in sorted(pages):
            store.recompute_page(connection, page_id, template)
    return sum(1 for page_id in touched if page_id), pages


def pull(run_dir: Path, client: ReviewClient, project: int | None = None) -> PullSummary:
    """Fetch every annotation of the run's project and apply the new ones (see module docstring)."""
    began = time.monotonic()
    run_dir = Path(run_dir).resolve()
    if not (run_dir / store.STORE_NAME).is_file():
        raise UsageError(f"no store at {run_dir / store.STORE_NAME}: run `census run ... --out {run_dir}` first")
    with store.connect(run_dir) as connection:
        template = store.stored_template(connection)
        chosen = project or remembered_project(connection, client.url)
        if chosen is None:
            raise UsageError(f"{run_dir} was never pushed to {client.url}: run `census review push {run_dir}` first")
        tasks = client.export(chosen, all_tasks=False)
        corrections = corrections_of(tasks, chosen, client.users())
        known = {row[0] for row in connection.execute("SELECT cell_id FROM cells")}
        inserted, pages = 0, set()
        for start in range(0, len(corrections), BATCH):
            added, touched = apply_batch(connection, corrections[start:start + BATCH], template)
            inserted, pages = inserted + added, pages | touched
        print(f"review pull: {inserted} new corrections from {len(corrections)} annotations", file=sys.stderr)
    return PullSummary(url=client.url, project=chosen, annotations=len(corrections), inserted=inserted,
                       unknown_cells=sum(1 for correction in corrections if correction.cell_id not in known),
                       pages_recomputed=len(pages), recalibration=recalibrate(run_dir),
                       seconds=round(time.monotonic() - began, 2))
