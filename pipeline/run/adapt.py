"""A register learns its hand (`census adapt RUN_DIR`): fine-tune the shipped recogniser on the run's reviewed
cells, keep that model inside the run, and read again with it every cell no reviewer has touched.

1. At least `MIN_CORRECTED` corrected cells (a reviewer's text), else a usage error and nothing changes.
2. `census train --from-corrections RUN_DIR` (`pipeline.htr.train.run_training`, recipe
   `models/crnn-finetune.yaml` unless given, its time budget `minutes` when given), training in
   RUN_DIR/models/training (interrupted, the same command resumes it), exported with the shipped
   calibration to RUN_DIR/models/adapted-<N>/crnn.onnx: each adapt a new version N, whose name is in the
   version of every value it reads (the store's `model` column). Its language model is the shipped one's
   texts with the run's corrected texts counted five times (`pipeline.htr.lm.build_register_lm`: the
   register's names, streets and formulas), or the shipped LM when the recipe's data_dir is missing.
3. The store's meta `adapted_model` names it: `census run ... --out RUN_DIR` reads later pages with it
   (when no other engine is asked for).
4. Every machine-read cell without a correction is read again with it, cut as the recogniser cut it
   (`pipeline.htr.corrections.read_crops`), and its page typed and routed again (fields, route,
   households, as `pipeline.run.runner.process_page` does): the page's JSON is rewritten and the page
   stored again, which re-applies the reviewers' corrections: a reviewer's value is never changed, and a
   reviewed cell keeps the reading, engine and model a reviewer saw.
5. `census recalibrate`: the run's calibration of the model that now reads most untouched cells (the adapted
   one). The cells that trained the adapted model cannot judge its confidences (it has learnt them), so it
   is fitted once reviewers have answered enough of the adapted model's own readings (`census review push`
   sends only what is still uncertain; every `census review pull` refits); until then none of its readings
   is accepted (`pipeline.run.recalibrate`, step 0).

`--reset` removes the adapted models and reads the untouched cells with the shipped model again.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pydantic import BaseModel

from pipeline.errors import UsageError
from pipeline.models import PageResult
from pipeline.run import store
from pipeline.run.paths import page_json_path, write_atomically
from pipeline.run.recalibrate import UNANSWERED, Recalibration, recalibrate

MODELS_FOLDER = "models"  # RUN_DIR/models: the adapted versions and their training
SHIPPED_ENGINE = "crnn"
# Fewer corrected cells than this teach the model too little to be worth reading a run again: the 10% that
# validate the fine-tuning (whole pages) would be a handful of cells.
MIN_CORRECTED = 50


class AdaptSummary(BaseModel):
    engine: str  # the engine every untouched cell is now read with (crnn:MODEL or crnn, the shipped)
    model: str  # its version, as the store's `model` column says
    corrected_cells: int  # the reviewers' corrected cells it learnt from (0 after a reset)
    reread_cells: int
    pages: int
    review_queue_before: int
    review_queue_after: int
    recalibration: Recalibration


def adapted_model(run_dir: Path) -> Path | None:
    """The run's adapted ONNX model, or None (no store, or the shipped model)."""
    if not (Path(run_dir) / store.STORE_NAME).is_file():
        return None
    with store.connect(run_dir, readonly=True) as connection:
        return store.adapted_model(connection, run_dir)


def run_engine(run_dir: Path, engine: str) -> str:
    """The engine a run's pages are read with: its adapted model when it has one and the default is asked for."""
    model = adapted_model(run_dir) if engine == SHIPPED_ENGINE else None
    if model is None:
        return engine
    print(f"reading with the run's adapted model {model} (`census adapt {run_dir} --reset` for the shipped one)",
          file=sys.stderr)
    return f"{SHIPPED_ENGINE}:{model}"


def adapt(run_dir: Path, config: Path | None = None, minutes: float | None = None,
          device: str = "auto") -> AdaptSummary:
    """Steps 1-5 of the module docstring."""
    from pipeline.htr.corrections import latest_corrections
    from pipeline.htr.train import run_training, write_recipe

    run_dir = Path(run_dir)
    corrected = len(latest_corrections(run_dir))
    if corrected < MIN_CORRECTED:
        raise UsageError(f"{run_dir} has {corrected} corrected cells; adapting needs {MIN_CORRECTED} at least "
                         "(review more with `census review`, then `census review pull`)")
    version = next_version(run_dir)
    recipe = write_recipe(config, run_dir / MODELS_FOLDER / "training",
                          time_budget_s=None if minutes is None else 60 * minutes)
    onnx = run_training(recipe, from_corrections=run_dir, device=device, tag=f"{run_dir.resolve().name}-{version}",
                        export_to=run_dir / MODELS_FOLDER / version / "crnn.onnx")
    register_lm(run_dir, onnx, recipe)
    with store.connect(run_dir) as connection, connection:
        connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (store.ADAPTED_MODEL_KEY, onnx.resolve().relative_to(run_dir.resolve()).as_posix()))
    return reread(run_dir, f"{SHIPPED_ENGINE}:{onnx}", corrected)


def register_lm(run_dir: Path, onnx: Path, recipe: Path) -> None:
    """Step 2's language model: the shipped LM's texts (from the recipe's data_dir) and the run's corrected
    texts (`pipeline.htr.lm.build_register_lm`), or the shipped LM when that data is not on this machine."""
    from pipeline.htr.corrections import corrected_texts
    from pipeline.htr.lm import build_register_lm
    from pipeline.htr.train import TrainConfig
    from pipeline.recognize.crnn import MODELS_DIR

    data_dir = Path(TrainConfig.from_yaml(recipe).data_dir)
    built = build_register_lm(onnx, corrected_texts(run_dir), data_dir, MODELS_DIR / "crnn.split.json")
    print(f"language model: {built} (the run's corrected texts with the shipped LM's)" if built else
          f"language model: the shipped one ({data_dir}, its texts, not found)", file=sys.stderr)


def reset(run_dir: Path) -> AdaptSummary:
    """Back to the shipped model: its reading of every untouched cell, the adapted models removed."""
    run_dir = Path(run_dir)
    if not (run_dir / store.STORE_NAME).is_file():
        raise UsageError(f"no store at {run_dir / store.STORE_NAME}: run `census run ... --out {run_dir}` first")
    with store.connect(run_dir) as connection, connection:
        connection.execute("DELETE FROM meta WHERE key = ?", (store.ADAPTED_MODEL_KEY,))
    summary = reread(run_dir, SHIPPED_ENGINE, 0)
    shutil.rmtree(run_dir / MODELS_FOLDER, ignore_errors=True)
    return summary


def next_version(run_dir: Path) -> str:
    numbers = [int(path.name.split("-")[1]) for path in (run_dir / MODELS_FOLDER).glob("adapted-*")
               if path.name.split("-")[1].isdigit()]
    return f"adapted-{max(numbers, default=0) + 1}"


def reread(run_dir: Path, engine_name: str, corrected: int) -> AdaptSummary:
    """Steps 4 and 5: every untouched machine-read cell read with `engine_name`, its page typed, routed and
    stored again; then the run's calibration."""
    from pipeline.recognize import get_engine

    engine = get_engine(engine_name)
    with store.connect(run_dir) as connection:
        template = store.stored_template(connection)
        queue_before = store.counts(connection)["review_queue"]
        untouched = [dict(row) for row in connection.execute(
            f"SELECT c.cell_id, c.page_id, c.x0, c.y0, c.x1, c.y1 FROM cells c JOIN pages p USING (page_id) "
            f"WHERE p.status = 'done' AND c.machine_status IN ('accepted', 'needs_review') AND {UNANSWERED} "
            f"ORDER BY c.page_id, c.row, c.col")]
        pages = sorted({cell["page_id"] for cell in untouched})
        for number, page_id in enumerate(pages, 1):
            print(f"adapt: reading page {number}/{len(pages)} again with {engine_name}", file=sys.stderr)
            result = read_page_again(run_dir, page_id, [cell for cell in untouched if cell["page_id"] == page_id],
                                     engine, template)
            write_atomically(page_json_path(run_dir, page_id), result.model_dump_json().encode())
            store.write_page(connection, result, template)
    calibration = recalibrate(run_dir)
    with store.connect(run_dir, readonly=True) as connection:
        queue_after = store.counts(connection)["review_queue"]
    return AdaptSummary(engine=engine_name, model=engine.model, corrected_cells=corrected,
                        reread_cells=len(untouched), pages=len(pages), review_queue_before=queue_before,
                        review_queue_after=queue_after, recalibration=calibration)


def read_page_again(run_dir: Path, page_id: str, cells: list[dict], engine, template) -> PageResult:
    """The page's stored result with `cells` read by `engine`, then typed and routed again."""
    from pipeline.dataset import households
    from pipeline.htr.corrections import read_crops
    from pipeline.stages import fields, route

    result = PageResult.model_validate_json(page_json_path(run_dir, page_id).read_bytes())
    crops = read_crops(run_dir, cells)
    readings = dict(zip(crops, engine.recognize(list(crops.values())) if crops else []))
    page_cells = []
    for cell in result.cells:
        reading = readings.get(cell.cell_id)
        update = {"reasons": [], "value": None, "value_from": None}  # as read: fields and route give them again
        if reading is not None:
            update |= {"text": reading.text, "confidence": reading.confidence, "status": "needs_review",
                       "engine": reading.engine, "model": reading.model}
        elif cell.status != "empty":
            update |= {"status": "needs_review"}
        page_cells.append(cell.model_copy(update=update))
    page_cells, persons = fields.interpret(page_cells, template)
    page_cells = route.route(page_cells, template)
    persons = households.assign_households(persons, template, page_id)
    return result.model_copy(update={"cells": page_cells, "persons": persons})
