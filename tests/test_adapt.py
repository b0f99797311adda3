"""`census adapt`: a run's reviewed cells fine-tune the recogniser, which reads the untouched cells again (and the
run's later pages); reviewers' values stay; `--reset` brings the shipped model back."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "crnn.pt"


def census(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def tiny_recipe(tmp_path: Path, run_dir: Path) -> Path:
    """A fine-tuning recipe of a few seconds on the run's corrections alone (a cache is present: nothing built)."""
    import yaml

    from pipeline.htr.cache import pack
    from pipeline.htr.corrections import corrected_cells

    cache = tmp_path / "cache"
    cache.mkdir()
    crops, texts, _ = corrected_cells(run_dir, 48)
    pack(crops[:20], texts[:20], cache / "synthetic_val.npz")
    (cache / "split.json").write_text("{}")
    recipe = {"cache_dir": str(cache), "weights": {"synthetic": 0.0, "corrections": 1.0},
              "val_weights": {"synthetic": 1.0}, "batch_size": 4, "time_budget_s": 600, "validate_every_s": 100,
              "threads": 1}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "tiny.yaml"


def cells(run_dir: Path, where: str = "1") -> dict[str, tuple]:
    with sqlite3.connect(run_dir / "census.sqlite") as connection:
        return {row[0]: row[1:] for row in connection.execute(
            f"SELECT cell_id, text, status, value, machine_text, engine, model FROM cells c WHERE {where}")}


UNTOUCHED = ("machine_status IN ('accepted', 'needs_review') AND "
             "NOT EXISTS (SELECT 1 FROM corrections k WHERE k.cell_id = c.cell_id)")
REVIEWED = "EXISTS (SELECT 1 FROM corrections k WHERE k.cell_id = c.cell_id)"


def models(run_dir: Path, where: str) -> set[str]:
    return {row[5] for row in cells(run_dir, where).values()}


def assert_register_lm_knows_the_corrections(run_dir: Path, onnx: Path) -> None:
    from pipeline.htr.corrections import corrected_texts
    from pipeline.htr.lm import NgramLM

    shipped, own = NgramLM.load(REPO / "models" / "crnn.lm.tsv.gz"), NgramLM.load(onnx.with_suffix(".lm.tsv.gz"))
    texts = corrected_texts(run_dir)
    assert sum(map(own.text_logprob, texts)) > sum(map(shipped.text_logprob, texts)) + len(texts)


@pytest.mark.skipif(not SHIPPED.exists(), reason="models/crnn.pt not shipped")
def test_adapt_rereads_the_untouched_cells_keeps_the_reviewed_ones_and_resets(tmp_path: Path) -> None:
    from pipeline.htr.newhand import render, review_from_truth

    scans = render(tmp_path / "scans", 2, 2701, "Kristi.ttf")
    later = render(tmp_path / "later", 1, 2702, "Kristi.ttf")
    run_dir = tmp_path / "run"
    assert census("run", scans, "--out", run_dir, "--workers", "1").returncode == 0
    shipped = models(run_dir, "machine_status != 'empty'")
    assert len(shipped) == 1 and "-ft" not in next(iter(shipped))

    too_few = census("adapt", run_dir, "--minutes", "0.05")  # nothing reviewed yet
    assert too_few.returncode == 2 and "corrected cells" in too_few.stderr
    assert not (run_dir / "models").exists() and models(run_dir, "machine_status != 'empty'") == shipped

    assert review_from_truth(run_dir, pages=1) >= 50
    reviewed = cells(run_dir, REVIEWED)
    done = census("adapt", run_dir, "--config", tiny_recipe(tmp_path, run_dir), "--minutes", "0.05",
                  "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    onnx = run_dir / "models" / "adapted-1" / "crnn.onnx"
    assert summary["engine"] == f"crnn:{onnx}" and "adapted-1" in summary["model"]
    assert all(onnx.with_suffix(suffix).exists() for suffix in (".charset.json", ".lm.tsv.gz", ".calibration.json"))
    if (REPO.parent / "shared" / "data").is_dir():  # the shipped LM's texts: the register's LM is built from them
        assert_register_lm_knows_the_corrections(run_dir, onnx)
    assert models(run_dir, UNTOUCHED) == {summary["model"]}  # every untouched cell read by the adapted model
    assert summary["reread_cells"] == len(cells(run_dir, UNTOUCHED))
    assert cells(run_dir, REVIEWED) == reviewed  # reviewers' values, and the reading they saw, unchanged
    page_json = json.loads(next((run_dir / "pages").glob("*.json")).read_text())
    assert {cell["model"] for cell in page_json["cells"]} & {summary["model"]}  # the page files say so too
    with sqlite3.connect(run_dir / "census.sqlite") as connection:
        queue = connection.execute("SELECT COUNT(*) FROM review_queue").fetchone()[0]
    assert summary["review_queue_after"] == queue
    # no reviewer has judged the adapted model's own readings yet: none is accepted (its confidence unknown)
    assert {row[1] for row in cells(run_dir, UNTOUCHED).values()} == {"needs_review"}
    calibration = json.loads((run_dir / "calibration.json").read_text())
    assert calibration["applied"] and not calibration["fitted"] and calibration["review_threshold"] == 1.0

    assert census("run", later, "--out", run_dir, "--workers", "1").returncode == 0  # a page added later
    new_page = "page_id IN (SELECT page_id FROM pages WHERE source LIKE '%later%') AND machine_status != 'empty'"
    assert models(run_dir, new_page) == {summary["model"]}
    assert {row[1] for row in cells(run_dir, new_page).values()} == {"needs_review"}  # the run's routing

    reset = census("adapt", run_dir, "--reset", "--json")
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout)["model"] in shipped and not (run_dir / "models").exists()
    assert models(run_dir, UNTOUCHED) == shipped and models(run_dir, new_page) == shipped
    assert cells(run_dir, REVIEWED) == reviewed
