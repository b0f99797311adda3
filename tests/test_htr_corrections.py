"""Reviewer corrections become fine-tuning samples: latest `corrected` value per cell, cut as the recogniser read it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from pipeline.htr.corrections import corrected_cells


def make_run_with_corrections(run_dir: Path) -> None:
    import cv2

    from pipeline.run.paths import page_image_path
    from pipeline.run.store import connect, create
    from pipeline.stages.templates import available_templates, load_template

    page = np.full((400, 600), 230, np.uint8)
    cv2.putText(page, "Rosa", (40, 90), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 3)
    cv2.putText(page, "fill", (40, 240), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 3)
    run_dir.mkdir()
    cv2.imwrite(str(run_dir / "page.png"), page)
    (run_dir / "images").mkdir()
    cv2.imwrite(str(page_image_path(run_dir, "p")), page)  # the run keeps each page's image
    with connect(run_dir) as connection:
        create(connection, load_template(next(iter(available_templates().values()))))
        connection.execute("INSERT INTO pages (page_id, source, page_index, status) VALUES ('p', ?, 0, 'done')",
                           (str(run_dir / "page.png"),))
        for cell, y0, text in (("p:r0:c0", 40, "Rasa"), ("p:r1:c0", 190, "fiil"), ("p:r2:c0", 300, "x")):
            connection.execute("INSERT INTO cells (cell_id, page_id, row, col, text, confidence, status, x0, y0, x1, y1) "
                               "VALUES (?, 'p', 0, 0, ?, 0.5, 'needs_review', 30, ?, 200, ?)", (cell, text, y0, y0 + 70))
        corrections = [("p:r0:c0", "Rosa", "corrected", "2026-01-01T10:00"),
                       ("p:r1:c0", "fil", "corrected", "2026-01-01T10:00"),
                       ("p:r1:c0", "fill", "corrected", "2026-01-02T10:00"),  # the latest one wins
                       ("p:r2:c0", "", "empty", "2026-01-01T10:00")]  # not a text correction
        connection.executemany("INSERT INTO corrections (cell_id, new_value, new_status, corrected_at, source) "
                               "VALUES (?, ?, ?, ?, 'test')", corrections)
        connection.commit()


def test_corrected_cells_are_latest_corrections_with_their_crops(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run_with_corrections(run_dir)
    crops, texts, pages = corrected_cells(run_dir, 48)
    assert texts == ["Rosa", "fill"] and pages == ["p", "p"]
    assert all(crop.shape[0] == 48 and crop.dtype == np.uint8 for crop in crops)
    assert all(crop.min() < 100 for crop in crops)  # the written word is in the crop


def test_census_train_from_corrections_fine_tunes_the_shipped_model(tmp_path: Path, monkeypatch) -> None:
    import json

    import pytest
    import yaml

    import pipeline.htr.train as training
    from pipeline.htr.cache import pack
    from pipeline.htr.train import run_training

    shipped = Path(__file__).resolve().parents[1] / "models" / "crnn.pt"
    if not shipped.exists():
        pytest.skip("models/crnn.pt not shipped")
    run_dir = tmp_path / "run"
    make_run_with_corrections(run_dir)
    cache = tmp_path / "cache"
    cache.mkdir()
    crops, texts, _ = corrected_cells(run_dir, 48)
    pack(crops, texts, cache / "synthetic_val.npz")
    (cache / "split.json").write_text("{}")  # a cache is present: nothing to build
    shipped_meta = json.loads(shipped.with_suffix(".charset.json").read_text())
    # a recipe without the model's shape (as crnn-finetune.yaml): fine-tuning takes the shipped model's
    config = {"cache_dir": str(cache), "out_dir": str(tmp_path / "out"),
              "weights": {"synthetic": 0.0}, "val_weights": {"synthetic": 1.0}, "batch_size": 2,
              "time_budget_s": 2, "validate_every_s": 100, "threads": 1}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))
    trained_on = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda config, *args, **kwargs:
                        trained_on.append((config, kwargs["extra"])) or real_train(config, *args, **kwargs))
    onnx_path = run_training(tmp_path / "ft.yaml", from_corrections=run_dir, device="cpu")
    (config_used, extra), = trained_on
    # trained at the width the model was trained at (it reads wider: shipped_meta["width_scale"]); already 48 px high
    expected_width = round(crops[0].shape[1] * shipped_meta["model"]["width_scale"])
    assert config_used.model.to_dict() == shipped_meta["model"]
    assert extra["corrections"].crops[0].shape == (48, expected_width)  # the corrections as the model reads them
    assert onnx_path.parent == tmp_path / "out" / "run-2-cells"  # a folder per run and set of corrections
    history = json.loads((onnx_path.parent / "history.json").read_text())
    assert history[-1]["samples"] > 0 and onnx_path.exists()
    exported_meta = json.loads(onnx_path.with_suffix(".charset.json").read_text())
    assert exported_meta["charset"] == shipped_meta["charset"]  # fine-tuned, same charset
    assert exported_meta["width_scale"] == shipped_meta["width_scale"]  # and reads as wide
    assert exported_meta["deslant"] == shipped_meta["deslant"] > 0  # and as straight
    assert exported_meta["version"].startswith(shipped_meta["version"] + "-ft")  # its readings say which model
    for suffix in (".lm.tsv.gz", ".calibration.json"):  # decodes and accepts as the shipped model does
        assert onnx_path.with_suffix(suffix).read_bytes() == shipped.with_suffix(suffix).read_bytes()
    from pipeline.run.store import connect

    with connect(run_dir) as connection:  # one more cell reviewed: the next fine-tuning starts afresh
        connection.execute("INSERT INTO corrections (cell_id, new_value, new_status, corrected_at, source) "
                           "VALUES ('p:r2:c0', 'x', 'corrected', '2026-01-03T10:00', 'test')")
        connection.commit()
    assert run_training(tmp_path / "ft.yaml", from_corrections=run_dir, device="cpu").parent.name == "run-3-cells"


def test_fine_tuning_a_run_without_corrected_cells_is_a_usage_error(tmp_path: Path) -> None:
    import pytest

    from pipeline.errors import UsageError
    from pipeline.htr.train import TrainConfig, corrections_sources
    from pipeline.run.store import connect

    run_dir = tmp_path / "run"
    make_run_with_corrections(run_dir)
    with connect(run_dir) as connection:
        connection.execute("UPDATE corrections SET new_status = 'illegible'")
        connection.commit()
    with pytest.raises(UsageError, match="no corrected cells"):
        corrections_sources(run_dir, TrainConfig())


def test_a_tenth_of_the_corrected_cells_validate_by_whole_pages() -> None:
    from pipeline.htr.corrections import validation_pages

    pages = [f"page{n}" for n in range(20) for _ in range(10 + n)]
    held = validation_pages(pages)
    share = sum(page in held for page in pages) / len(pages)
    assert held and 0.1 <= share < 0.2 and held == validation_pages(list(reversed(pages)))
    assert validation_pages(["one"] * 50) == set()  # one page: nothing to spare, trained on all
    assert len(validation_pages(["a"] * 40 + ["b"] * 40)) == 1


def test_fine_tuning_without_the_shared_data_says_so_and_trains_on_synthetic_cells(tmp_path: Path, capsys) -> None:
    import json

    import pytest
    import yaml

    from pipeline.htr.train import run_training

    if not (Path(__file__).resolve().parents[1] / "models" / "crnn.pt").exists():
        pytest.skip("models/crnn.pt not shipped")
    run_dir = tmp_path / "run"
    make_run_with_corrections(run_dir)
    config = {"cache_dir": str(tmp_path / "cache"), "data_dir": str(tmp_path / "no-such-data"),
              "external_dir": str(tmp_path / "no-external-data"),
              "out_dir": str(tmp_path / "out"), "synthetic_train": 16, "synthetic_val": 8,
              "weights": {"poilus": 0.5, "synthetic": 0.5}, "val_weights": {"synthetic": 1.0}, "batch_size": 4,
              "time_budget_s": 1, "validate_every_s": 100, "threads": 1}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))
    onnx_path = run_training(tmp_path / "ft.yaml", from_corrections=run_dir, device="cpu")
    assert "no-such-data not found: no real handwritten lines" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "cache").glob("*.npz")) == ["synthetic_train.npz", "synthetic_val.npz"]
    assert json.loads((onnx_path.parent / "history.json").read_text())[-1]["samples"] > 0 and onnx_path.exists()


class RecordingEngine:
    """Reads nothing; keeps the crops it was given, as the recogniser received them."""

    name, model = "recording", ""

    def __init__(self) -> None:
        self.crops: list[np.ndarray] = []

    def recognize(self, crops):
        from pipeline.models import Reading

        self.crops.extend(crops)
        return [Reading(text="x", confidence=0.5, engine=self.name) for _ in crops]


def test_corrected_cells_are_cut_as_the_recogniser_read_them(tmp_path: Path) -> None:
    """Stored boxes are in original page pixels; the recogniser read its crops from the deskewed page."""
    import cv2

    from pipeline.htr.corrections import read_crops
    from pipeline.run.runner import plan, process_page
    from pipeline.synth import generate_pages
    from pipeline.stages.templates import load_template

    generate_pages(tmp_path / "scans", n_pages=1, seed=5, skew_max_deg=2.5)
    (task,) = plan([tmp_path / "scans"]).tasks
    engine, run_dir = RecordingEngine(), tmp_path / "run"
    (run_dir / "images").mkdir(parents=True)
    result = process_page(task, load_template("padro-catala-1930"), engine, run_dir)
    assert abs(result.preprocess.skew_deg) > 0.3  # a skewed scan: original and read crops differ
    read = [cell for cell in result.cells if cell.engine == "recording"]
    cells = [{"cell_id": cell.cell_id, "page_id": cell.page_id, **cell.bbox.model_dump()} for cell in read]
    again = read_crops(run_dir, cells)
    assert len(again) == len(read) == len(engine.crops)
    alike = []  # the page image is kept as JPEG: a few trims differ by its noise
    for cell, crop in zip(read, engine.crops):
        cut = again[cell.cell_id]
        same_size = cv2.resize(cut, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_AREA)
        alike.append(abs(cut.shape[0] - crop.shape[0]) <= 3 and abs(cut.shape[1] - crop.shape[1]) <= 3
                     and np.abs(same_size.astype(int) - crop).mean() < 10)
    assert np.mean(alike) >= 0.95
    raw_widths = [cell.bbox.width - crop.shape[1] for cell, crop in zip(read, engine.crops)]
    assert np.median(raw_widths) > 20  # the box as stored is far from what was read


def test_the_new_hand_benchmark_answers_the_whole_review_queue_from_the_ground_truth(tmp_path: Path) -> None:
    from pipeline.run import store
    from pipeline.evaluation.evaluate import groundtruth_for, load_truth
    from pipeline.htr.newhand import TEMPLATE, render, review_from_truth
    from pipeline.run.batch import run
    from pipeline.run.runner import RunOptions

    scans = render(tmp_path / "scans", 1, 21, "DancingScript-Regular")
    run([scans], RunOptions(out=tmp_path / "run", template=TEMPLATE, engine="null", workers=1), progress=False)
    assert review_from_truth(tmp_path / "run") > 100
    truth = load_truth(groundtruth_for(next(scans.glob("*.png")), 0, multi_page=False))
    with store.connect(tmp_path / "run", readonly=True) as connection:
        left = connection.execute("SELECT COUNT(*) FROM cells WHERE status = 'needs_review'").fetchone()[0]
        corrected = {row[0] for row in connection.execute("SELECT text FROM cells WHERE status = 'corrected'")}
    assert left <= 0.05 * len(truth)  # only cells the layout found without a ground-truth match
    assert len(corrected & {cell.text for cell in truth}) > 20


def test_the_review_of_the_first_pages_answers_every_cell_of_those_pages_only(tmp_path: Path) -> None:
    from pipeline.evaluation.recalibration import measure
    from pipeline.htr.newhand import TEMPLATE, render
    from pipeline.run.batch import run
    from pipeline.run.runner import RunOptions

    scans = render(tmp_path / "scans", 2, 22, "DancingScript-Regular")
    options = RunOptions(out=tmp_path / "run", template=TEMPLATE, engine="null", workers=1)
    run([scans], options, progress=False)
    figures = measure(tmp_path / "run", review_pages=1, out=tmp_path / "measure")
    with sqlite3.connect(tmp_path / "measure" / "run" / "census.sqlite") as connection:
        answered = connection.execute("SELECT DISTINCT p.source FROM corrections JOIN cells USING (cell_id) "
                                      "JOIN pages p USING (page_id)").fetchall()
    assert answered == [(str(sorted(scans.glob("*.png"))[0]),)]  # the first page by source, only
    assert figures["answered"] > 100 and figures["after"]["pages"] == figures["before"]["pages"] == 1
    assert not figures["recalibration"]["calibration"]["fitted"]  # the null engine reads nothing to calibrate
    with sqlite3.connect(tmp_path / "run" / "census.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM corrections").fetchone() == (0,)  # on a copy
