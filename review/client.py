"""The only module that talks to Label Studio: label-studio-sdk calls with timeouts, bounded
retries on transient failures, and every failure turned into a ServiceError that says what to do.

Only idempotent calls are retried here; task import is not (a retried import after a timeout
could create duplicates), so `push` re-reads the project before importing again.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import ServiceError

T = TypeVar("T")
TIMEOUT_S = 120.0  # a 10,000-task import or export takes tens of seconds on a busy machine
RETRIES = 3
BACKOFF_S = 1.0
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class ProjectGone(ServiceError):
    """The project this run was pushed to no longer exists on the server."""


class ReviewClient:
    """A Label Studio server at `url`, authenticated by a legacy API token."""

    def __init__(self, url: str, token: str, timeout: float = TIMEOUT_S, retries: int = RETRIES) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.retries = retries
        # The SDK's own retries are off: ours are bounded, logged and limited to idempotent calls.
        self.sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout, max_retries=0)

    def call(self, what: str, action: Callable[[], T], idempotent: bool = True, project: int | None = None) -> T:
        """Run one SDK call; retry transient failures of idempotent calls with backoff."""
        attempts = self.retries if idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except Exception as error:  # noqa: BLE001 - classified just below
                transient = _is_transient(error)
                if not transient or attempt == attempts:
                    raise self._service_error(what, error, project) from error
                print(f"label studio: {what} failed ({_short(error)}); retry {attempt}/{attempts - 1}",
                      file=sys.stderr)
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _service_error(self, what: str, error: Exception, project: int | None) -> ServiceError:
        status = getattr(error, "status_code", None)
        if status in (401, 403):
            return ServiceError(
                f"Label Studio at {self.url} rejected the API token while trying to {what} (HTTP {status}); "
                "use the token of this server: restart it with `census review serve` (token file in its "
                "data directory) or set CENSUS_LS_TOKEN")
        if status == 404 and project is not None:
            return ProjectGone(
                f"Label Studio project {project} no longer exists at {self.url} (deleted, or another data "
                "directory); corrections already pulled are safe in the store. Run `census review push "
                "RUN_DIR --new-project` to push the queue to a new project")
        if status is None and _is_transient(error):
            return ServiceError(
                f"Label Studio is not reachable at {self.url} while trying to {what} ({_short(error)}); "
                "start it with `census review serve` or pass the right --url")
        return ServiceError(f"Label Studio failed to {what}: {_short(error)}")

    # --- projects ---------------------------------------------------------------------------
    def project_exists(self, project: int) -> bool:
        try:
            self.call("read the project", lambda: self.sdk.projects.get(id=project), project=project)
        except ProjectGone:
            return False
        return True

    def check(self) -> str:
        """Fail early with a clear ServiceError unless the server answers and accepts the token."""
        return self.call("check the connection", lambda: self.sdk.users.whoami()).email

    def project_counts(self, project: int) -> tuple[int, int]:
        """(tasks, tasks with at least one annotation) of a project."""
        found = self.call("read the project", lambda: self.sdk.projects.get(id=project), project=project)
        return int(found.task_number or 0), int(found.num_tasks_with_annotations or 0)

    def create_project(self, title: str, label_config: str, description: str) -> int:
        created = self.call("create a project", lambda: self.sdk.projects.create(
            title=title, label_config=label_config, description=description,
            sampling="Sequential sampling", show_skip_button=True, enable_empty_annotation=True,
            maximum_annotations=1, show_collab_predictions=True), idempotent=False)
        # The first tab, and the label stream started from it, follow the review priority.
        self.call("create the review-order view", lambda: self.sdk.views.create(
            project=created.id, data={"title": "Review order", "ordering": ["tasks:data.priority"]}),
            idempotent=False, project=created.id)
        return int(created.id)

    def ensure_local_storage(self, project: int, path: str) -> None:
        """Attach a local-files storage at `path` (never synced: it only authorises serving)."""
        storages = self.call("list storages", lambda: self.sdk.import_storage.local.list(project=project),
                             project=project)
        if any(storage.path == path for storage in storages):
            return
        self.call("attach local files storage", lambda: self.sdk.import_storage.local.create(
            project=project, path=path, use_blob_urls=False, title="census crops"),
            idempotent=False, project=project)

    # --- tasks and predictions ---------------------------------------------------------------
    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> list[int]:
        response = self.call("import tasks", lambda: self.sdk.projects.import_tasks(
            id=project, request=tasks, return_task_ids=True), idempotent=False, project=project)
        return list(response.task_ids or [])

    def export(self, project: int, all_tasks: bool) -> list[dict[str, Any]]:
        """Tasks as Label Studio JSON (all, or only annotated ones) through the export API."""
        def download() -> list[dict[str, Any]]:
            chunks = self.sdk.projects.exports.download_sync(
                project, export_type="JSON", download_all_tasks=all_tasks)
            return json.loads(b"".join(chunks))

        return self.call("export tasks", download, project=project)

    def task_predictions(self, task: int) -> list[int]:
        found = self.call("list predictions", lambda: self.sdk.predictions.list(task=task))
        return [int(prediction.id) for prediction in found]

    def replace_prediction(self, task: int, data: dict[str, Any], prediction: dict[str, Any]) -> None:
        """Point an existing task at a newer machine reading: new data, one fresh prediction."""
        for prediction_id in self.task_predictions(task):
            self.call("delete an outdated prediction", lambda: self.sdk.predictions.delete(id=prediction_id))
        self.call("update a task", lambda: self.sdk.tasks.update(id=str(task), data=data))
        self.call("create a prediction", lambda: self.sdk.predictions.create(task=task, **prediction),
                  idempotent=False)

    def annotate(self, task: int, result: list[dict[str, Any]]) -> int:
        """Create an annotation as a reviewer would (used by tests and the benchmark)."""
        created = self.call("create an annotation", lambda: self.sdk.annotations.create(
            id=task, result=result), idempotent=False)
        return int(created.id)

    def accept_predictions(self, project: int) -> None:
        """The Data Manager's bulk action a reviewer uses to accept every machine reading as an annotation."""
        self.call("accept predictions", lambda: self.sdk.actions.create(
            id="predictions_to_annotations", project=project, selected_items={"all": True, "excluded": []}),
            idempotent=False, project=project)

    def update_annotation(self, annotation: int, result: list[dict[str, Any]]) -> None:
        self.call("update an annotation", lambda: self.sdk.annotations.update(id=annotation, result=result))

    def users(self) -> dict[int, str]:
        """User id -> email, to name reviewers in the audit trail."""
        found = self.call("list users", lambda: self.sdk.users.list())
        return {int(user.id): user.email or user.username or str(user.id) for user in found}


def _is_transient(error: Exception) -> bool:
    import httpx

    if isinstance(error, httpx.TransportError):
        return True
    return getattr(error, "status_code", None) in TRANSIENT_STATUS


def _short(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    if status is not None:
        body = getattr(error, "body", None)
        detail = (body.get("validation_errors") or body.get("detail")) if isinstance(body, dict) else body
        return f"HTTP {status}" + (f": {detail}"[:300] if detail else "")
    return f"{type(error).__name__}: {error}"[:300]


def open_client(url: str | None = None, data_dir: Path | None = None) -> ReviewClient:
    """A client for `url`, or for the server `census review serve` started from `data_dir`."""
    from review import server

    running = server.running(data_dir)
    if url is None:
        if running is None:
            raise ServiceError("no Label Studio server is running from "
                               f"{data_dir or server.default_data_dir()}; start it with `census review serve` "
                               "or pass --url")
        url = running.url
    return ReviewClient(url, server.read_token(data_dir))
