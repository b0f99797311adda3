"""Review round trip against a real Label Studio server: push, annotate through the API as a
reviewer would, pull, and check the store (once, idempotent, resumable, errors exit 4).

The server is installed (`.venv-ls`, once, minutes) and started once for the module.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.run import store
from pipeline.errors import ServiceError
from pipeline.stages.route import threshold_for
from pipeline.stages.templates import load_template
from review import bench, crops, pull, push, server, training
from review.client import ProjectGone, ReviewClient

REPO = Path(__file__).resolve().parents[1]
CENSUS = REPO / ".venv" / "bin" / "census"
ARTIFACTS = REPO / "test-artifacts"

pytestmark = pytest.mark.server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Live:
    def __init__(self, info: server.ServerInfo, base: Path) -> None:
        self.info = info
        self.base = base
        self.data_dir = Path(info.data_dir)
        self.client = ReviewClient(info.url, server.read_token(self.data_dir))
        self.runs = 0

    def new_run(self, pages: int = 2, rows: int = 4) -> tuple[Path, int]:
        self.runs += 1
        run_dir = self.base / f"run{self.runs}"
        return run_dir, bench.make_review_run(run_dir, pages=pages, rows=rows, all_review=False)

    def push(self, run_dir: Path, **options) -> push.PushSummary:
        return push.push(run_dir, self.client, self.base, **options)

    def tasks(self, project: int) -> dict[str, dict]:
        return {task["data"]["cell_id"]: task for task in self.client.export(project, all_tasks=True)}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    try:
        server.ensure_installed()
    except ServiceError as error:
        pytest.skip(f"Label Studio cannot be installed here: {error}")
    base = tmp_path_factory.mktemp("review")
    info = server.start(base / "label-studio", port=free_port(), document_root=base)
    try:
        yield Live(info, base)
    finally:
        server.stop(Path(info.data_dir))


def store_rows(run_dir: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(run_dir / store.STORE_NAME) as connection:
        return [tuple(row) for row in connection.execute(sql, args)]


def snapshot(run_dir: Path) -> tuple:
    return tuple(store_rows(run_dir, f"SELECT * FROM {table} ORDER BY 1")
                 for table in ("cells", "persons", "corrections"))


def text_answer(text: str) -> list[dict]:
    return bench.reading_result(text)


def verdict_answer(verdict: str) -> list[dict]:
    return [{"from_name": "verdict", "to_name": "crop", "type": "choices", "value": {"choices": [verdict]}}]


def cell_of(page: int, row: int, field: str) -> str:
    return f"{bench.page_id_of(page)}:r{row}:c{bench.FIELDS.index(field)}"


def test_server_secrets_stay_private(live: Live) -> None:
    token = server.read_token(live.data_dir)
    for path in (server.token_path(live.data_dir), server.password_path(live.data_dir)):
        assert path.stat().st_mode & 0o777 == 0o600
    for text in ((live.data_dir / "server.log").read_text(errors="replace"),
                 (live.data_dir / "server.json").read_text(), server.login_hint(live.info)):
        assert token not in text
        assert server.password_path(live.data_dir).read_text() not in text
    assert server.start(live.data_dir, port=live.info.port, document_root=live.base).pid == live.info.pid


def test_port_taken_is_refused(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(ServiceError, match="already in use"):
            server.start(tmp_path / "ls", port=holder.getsockname()[1], document_root=tmp_path)


def test_push_orders_tasks_serves_crops_and_is_idempotent(live: Live) -> None:
    run_dir, queue = live.new_run()
    first = live.push(run_dir)
    assert (first.created, first.updated, first.skipped) == (queue, 0, 0)
    tasks = sorted(live.tasks(first.project).values(), key=lambda task: task["id"])
    assert len(tasks) == queue
    template = load_template(bench.TEMPLATE)
    order = [(not template.column(task["data"]["field"]).key_field, task["data"]["confidence"]) for task in tasks]
    assert order == sorted(order)  # key fields first, then least confident
    import httpx

    image = httpx.get(live.info.url + tasks[0]["data"]["crop"],
                      headers={"Authorization": f"Token {server.read_token(live.data_dir)}"})
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    predictions = live.client.sdk.predictions.list(project=first.project)
    assert len(predictions) == queue
    by_task = {prediction.task: prediction for prediction in predictions}
    assert by_task[tasks[0]["id"]].score == tasks[0]["data"]["confidence"]
    assert by_task[tasks[0]["id"]].result[0]["value"]["text"] == [tasks[0]["data"]["machine_text"]]

    again = live.push(run_dir)
    assert (again.project, again.created, again.updated, again.unchanged) == (first.project, 0, 0, queue)
    assert len(live.tasks(first.project)) == queue

    # A name newly routed to review with a very low confidence: pushed last, yet shown first.
    result, _ = bench.page_result(1, 4, lambda row, col: 0.05 if (row, col) == (3, 0) else bench.default_confidence(
        row, col), lambda row, col: "needs_review" if bench.half_review(row, col) or (row, col) == (3, 0)
        else "accepted", model="v1")
    with store.connect(run_dir) as connection:
        store.write_page(connection, result, template)
    assert live.push(run_dir).created == 1
    views = live.client.sdk.views.list(project=first.project)
    assert [view.data["ordering"] for view in views] == [["tasks:data.priority"]]
    shown = [task.data for task in live.client.sdk.tasks.list(project=first.project, view=views[0].id)]
    assert shown[0]["cell_id"] == cell_of(1, 3, "name") and len(shown) == queue + 1
    assert [data["priority"] for data in shown] == sorted(data["priority"] for data in shown)


def test_rerecognised_cell_updates_its_prediction_not_a_new_task(live: Live) -> None:
    run_dir, queue = live.new_run()
    first = live.push(run_dir)
    template = load_template(bench.TEMPLATE)
    result, _ = bench.page_result(0, 4, lambda row, col: 0.5, lambda row, col: "needs_review" if (row + col) % 2 == 0
                                  else "accepted", model="v2")
    result.cells[0].text = "Josep Puig i Serra"
    with store.connect(run_dir) as connection:
        store.write_page(connection, result, template)
    second = live.push(run_dir)
    on_page = sum(1 for cell in result.cells if cell.status == "needs_review")
    assert (second.created, second.updated, second.unchanged) == (0, on_page, queue - on_page)
    tasks = live.tasks(first.project)
    assert len(tasks) == queue
    task = tasks[result.cells[0].cell_id]
    assert task["data"]["machine_text"] == "Josep Puig i Serra"
    predictions = live.client.sdk.predictions.list(task=task["id"])
    assert [(p.model_version, p.result[0]["value"]["text"]) for p in predictions] == [
        ("bench:v2", ["Josep Puig i Serra"])]


def test_pull_appends_corrections_once_and_recomputes(live: Live) -> None:
    run_dir, queue = live.new_run()
    project = live.push(run_dir).project
    tasks = live.tasks(project)
    age, name, place = cell_of(0, 1, "age"), cell_of(0, 0, "name"), cell_of(1, 0, "birth_place")
    annotation = live.client.annotate(tasks[age]["id"], text_answer("57"))
    live.client.annotate(tasks[name]["id"], verdict_answer("illegible"))
    live.client.annotate(tasks[place]["id"], verdict_answer("empty"))

    summary = pull.pull(run_dir, live.client)
    assert (summary.annotations, summary.inserted, summary.pages_recomputed) == (3, 3, 2)
    rows = store_rows(run_dir, "SELECT cell_id, old_value, new_value, new_status, reviewer, source "
                               "FROM corrections ORDER BY cell_id")
    assert rows == [(name, "Josep Puig Serra", "", "illegible", server.USERNAME, "label-studio"),
                    (age, "38", "57", "corrected", server.USERNAME, "label-studio"),
                    (place, "Vic", "", "empty", server.USERNAME, "label-studio")]
    assert store_rows(run_dir, "SELECT text, value, status FROM cells WHERE cell_id = ?", age) == [
        ("57", "57", "corrected")]
    assert store_rows(run_dir, "SELECT age FROM persons WHERE person_id = ?", f"{bench.page_id_of(0)}:r1") == [(57,)]
    assert store_rows(run_dir, "SELECT status FROM cells WHERE cell_id IN (?, ?) ORDER BY cell_id", name, place) == [
        ("illegible",), ("empty",)]

    before = snapshot(run_dir)
    assert pull.pull(run_dir, live.client).inserted == 0
    assert snapshot(run_dir) == before
    repush = live.push(run_dir)
    assert (repush.created, repush.updated, repush.queue) == (0, 0, queue - 3)
    assert push.status(run_dir, live.client).model_dump() == {
        "url": live.info.url, "project": project, "queue": queue - 3, "pushed": queue, "done": 3,
        "pending": queue - 3, "corrections": 3}

    live.client.update_annotation(annotation, text_answer("58"))
    assert pull.pull(run_dir, live.client).inserted == 1
    assert store_rows(run_dir, "SELECT old_value, new_value FROM corrections WHERE cell_id = ? "
                               "ORDER BY correction_id", age) == [("38", "57"), ("57", "58")]
    assert store_rows(run_dir, "SELECT age FROM persons WHERE person_id = ?", f"{bench.page_id_of(0)}:r1") == [(58,)]

    out = live.base / "training"
    assert training.export_training(run_dir, out) == 1
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(entry["cell_id"], entry["text"], entry["machine_text"]) for entry in manifest] == [(age, "58", "38")]
    assert (out / manifest[0]["image"]).stat().st_size > 0
    assert (out / manifest[0]["image"].replace(".png", ".gt.txt")).read_text() == "58"


def test_pull_refits_the_run_calibration_and_reroutes_the_cells_no_reviewer_answered(live: Live) -> None:
    run_dir, queue = live.new_run(pages=5, rows=20)  # every other cell queued (250), the others accepted
    project = live.push(run_dir).project
    live.client.accept_predictions(project)  # the reviewer confirms each queued reading...
    tasks = live.tasks(project)
    doubtful = sorted(tasks, key=lambda cell_id: (tasks[cell_id]["data"]["confidence"], cell_id))[:25]
    for cell_id in doubtful:  # ... but corrects the 25 least confident: the machine is sure where it is right
        live.client.update_annotation(tasks[cell_id]["annotations"][0]["id"], text_answer("Vilanova"))

    summary = pull.pull(run_dir, live.client)
    calibration = summary.recalibration.calibration
    assert (calibration.fitted, calibration.applied) == (True, True)
    assert (calibration.reviewed, calibration.errors) == (queue, 25)
    assert json.loads((run_dir / "calibration.json").read_text()) == calibration.model_dump()
    assert store_rows(run_dir, "SELECT COUNT(*), SUM(text = 'Vilanova') FROM cells "
                               "WHERE status = 'corrected'") == [(queue, 25)]  # every answer kept
    template = load_template(bench.TEMPLATE)
    untouched = store_rows(run_dir, "SELECT field, machine_confidence, confidence, status FROM cells "
                                    "WHERE cell_id NOT IN (SELECT cell_id FROM corrections)")
    assert len(untouched) == queue
    run_template = template.model_copy(update={"review_threshold": calibration.review_threshold})
    for field, machine, confidence, status in untouched:
        assert confidence == pytest.approx(float(calibration.confidence(machine)))
        assert status == ("accepted" if confidence >= threshold_for(run_template, field) else "needs_review")
    assert {status for *_, status in untouched} == {"accepted", "needs_review"}

    before = snapshot(run_dir)
    assert pull.pull(run_dir, live.client).inserted == 0
    assert snapshot(run_dir) == before


KILLED_PULL = """
import os, sys
from pathlib import Path
from pipeline.run import store
from review import pull, server
from review.client import ReviewClient
pull.BATCH = 2
calls = []
original = store.recompute_page
def dies_in_third_batch(connection, page_id, template):
    calls.append(page_id)
    if len(calls) == 3:
        os._exit(9)  # killed mid-transaction: corrections of batch 3 inserted but not committed
    original(connection, page_id, template)
store.recompute_page = dies_in_third_batch
pull.pull(Path(sys.argv[1]), ReviewClient(sys.argv[2], server.read_token(Path(sys.argv[3]))))
"""


def test_killed_pull_resumes_without_loss_or_duplicates(live: Live) -> None:
    run_dir, _ = live.new_run(pages=1, rows=6)
    project = live.push(run_dir).project
    tasks = sorted(live.tasks(project).values(), key=lambda task: task["id"])[:7]
    for number, task in enumerate(tasks):
        live.client.annotate(task["id"], text_answer(f"reviewed {number}"))
    killed = subprocess.run([sys.executable, "-c", KILLED_PULL, str(run_dir), live.info.url, str(live.data_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    assert store_rows(run_dir, "SELECT COUNT(*) FROM corrections") == [(4,)]  # two whole batches, no half one
    assert pull.pull(run_dir, live.client).inserted == 3
    keys = store_rows(run_dir, "SELECT annotation_id FROM corrections")
    assert len(keys) == 7 and len(set(keys)) == 7
    assert sorted(text for (text,) in store_rows(run_dir, "SELECT text FROM cells WHERE status = 'corrected'")) == [
        f"reviewed {number}" for number in range(7)]


def census(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CENSUS), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_service_failures_exit_4_with_advice(live: Live) -> None:
    run_dir, _ = live.new_run(pages=1, rows=2)
    project = live.push(run_dir).project
    data_dir = str(live.data_dir)

    wrong = census("review", "pull", str(run_dir), "--url", live.info.url, "--data-dir", data_dir,
                   env={"CENSUS_LS_TOKEN": "0" * 40})
    assert wrong.returncode == 4 and "rejected the API token" in wrong.stderr

    down = census("review", "status", str(run_dir), "--url", f"http://127.0.0.1:{free_port()}",
                  "--data-dir", data_dir)
    assert down.returncode == 4 and "not reachable" in down.stderr and "census review serve" in down.stderr

    live.client.sdk.projects.delete(id=project)
    with pytest.raises(ProjectGone, match="--new-project"):
        live.push(run_dir)
    gone = census("review", "pull", str(run_dir), "--url", live.info.url, "--data-dir", data_dir)
    assert gone.returncode == 4 and "no longer exists" in gone.stderr
    pushed = census("review", "push", str(run_dir), "--new-project", "--data-dir", data_dir, "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["project"] != project


def test_labeling_page_renders_crop_and_prefilled_reading(live: Live, tmp_path: Path) -> None:
    pytest.importorskip("selenium")
    if not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists():
        pytest.skip("needs Debian chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run_dir, _ = live.new_run(pages=1, rows=2)
    project = live.push(run_dir).project
    task = min(live.tasks(project).values(), key=lambda task: task["id"])
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)
    try:
        wait = WebDriverWait(driver, 90)
        driver.get(f"{live.info.url}/user/login/")
        driver.find_element(By.NAME, "email").send_keys(server.USERNAME)
        driver.find_element(By.NAME, "password").send_keys(server.password_path(live.data_dir).read_text())
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
        wait.until(lambda browser: "/user/login" not in browser.current_url)
        driver.get(f"{live.info.url}/projects/{project}/data?task={task['id']}")
        crop_name = task["data"]["crop"].rsplit("/", 1)[-1]
        wait.until(lambda browser: browser.execute_script(
            "return [...document.images].some(i => i.src.includes(arguments[0]) && i.complete && i.naturalWidth > 0)",
            crop_name))
        reading = task["data"]["machine_text"]
        wait.until(lambda browser: reading in browser.find_element(By.TAG_NAME, "body").text or browser.execute_script(
            "return [...document.querySelectorAll('textarea,input')].some(e => e.value === arguments[0])", reading))
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "review-labeling-page.png"))
    finally:
        driver.quit()


def test_synthetic_run_queue_round_trip(live: Live) -> None:
    """A real run (`census synth` + `census run`): every queued cell pushed once, corrections pulled once."""
    scans, run_dir = live.base / "synth", live.base / "synth-run"
    assert census("synth", "-n", "1", "-o", str(scans)).returncode == 0
    ran = census("run", str(scans), "--out", str(run_dir), "--engine", "tesseract", "--workers", "1",
                 env={"OMP_THREAD_LIMIT": "1"})
    assert ran.returncode == 0, ran.stderr
    queue = store_rows(run_dir, "SELECT cell_id, field FROM review_queue")
    pushed = live.push(run_dir)
    assert (pushed.created, pushed.skipped) == (len(queue), 0) and len(queue) > 20
    tasks = sorted(live.tasks(pushed.project).values(), key=lambda task: task["id"])
    assert sorted(task["data"]["cell_id"] for task in tasks) == sorted(cell_id for cell_id, _ in queue)
    assert all(crops.crop_path(run_dir, task["data"]["cell_id"]).is_file() for task in tasks)
    name_task = next(task for task in tasks if task["data"]["field"] == "name")
    reviewed = tasks[:5] + ([name_task] if name_task not in tasks[:5] else [])
    answers = {task["data"]["cell_id"]: f"Reviewed {number}" for number, task in enumerate(reviewed)}
    for task in reviewed:
        live.client.annotate(task["id"], text_answer(answers[task["data"]["cell_id"]]))
    assert pull.pull(run_dir, live.client).inserted == len(reviewed)
    assert dict(store_rows(run_dir, "SELECT cell_id, text FROM cells WHERE status = 'corrected'")) == answers
    person = name_task["data"]["cell_id"].rsplit(":", 1)[0]
    assert store_rows(run_dir, "SELECT name FROM persons WHERE person_id = ?", person) == [
        (answers[name_task["data"]["cell_id"]],)]
    assert (live.push(run_dir).created, pull.pull(run_dir, live.client).inserted) == (0, 0)


def test_data_directory_survives_a_restart(live: Live) -> None:
    run_dir, queue = live.new_run(pages=1, rows=2)
    project = live.push(run_dir).project
    assert server.stop(live.data_dir) and server.running(live.data_dir) is None
    restarted = server.start(live.data_dir, port=live.info.port, document_root=live.base)
    assert restarted.pid != live.info.pid
    status = push.status(run_dir, live.client)
    assert (status.project, status.pushed) == (project, queue)
    assert live.push(run_dir).created == 0
