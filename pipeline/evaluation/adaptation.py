"""What `census adapt` gains on a real register in one hand the recogniser never saw
(`python -m pipeline.evaluation.adaptation GT_DIR --review-pages N --minutes M --out DIR`).

A register's first `N` pages (by file name) stand for the reviewed ones: their ground-truth lines are the
reviewer's corrections, at line level (a register of ALTO lines has no table cells), cut as `census eval`
cuts them (`pipeline.htr.data.line_crops`) and normalised as `corrected_cells` normalises a cell. They
fine-tune the shipped model as `census adapt` does (the same recipe, `models/crnn-finetune.yaml` unless
given, its time budget `M` minutes, a tenth of the reviewed pages validating: `pipeline.htr.train`) and its
language model is built with their texts (`pipeline.htr.lm.build_register_lm`), then the shipped and the
adapted model read the register's other pages' lines (`census eval`'s scoring:
`pipeline.evaluation.evaluate_lines`); `adapted_shipped_lm` is the adapted model with the shipped LM. The
acceptance figures of both are at the shipped calibration, which a run no longer applies to its adapted
model (`census recalibrate`'s step 0: none of its readings accepted until reviewers have judged them);
`judged` continues the loop: reviewers answer the adapted model's readings of the next pages and its
calibration is refitted on them. `--adapted ONNX` scores a model adapted before instead of training one.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def reviewed_lines(pages: list, height: int) -> tuple[list, list[str], list[str]]:
    """Normalised crops, texts and page stems of every readable ground-truth line of `pages`."""
    from pipeline.htr.data import line_crops
    from pipeline.htr.preprocess import normalize_crop

    crops, texts, stems = [], [], []
    for page in pages:
        for line, crop in line_crops(page):
            crops.append(normalize_crop(crop, height))
            texts.append(line.text)
            stems.append(page.stem)
    return crops, texts, stems


def adapt_on_lines(pages: list, recipe: Path, out: Path, device: str) -> Path:
    """The shipped model fine-tuned on `pages`' ground-truth lines as `census adapt` fine-tunes it (with the
    recipe's out_dir); its ONNX in `out`/model."""
    from pipeline.htr.train import (TrainConfig, ensure_cache, export_fine_tuned, reviewed_sources, train,
                                    with_checkpoint_input)
    from pipeline.recognize.crnn import MODELS_DIR

    init = MODELS_DIR / "crnn.pt"
    config = TrainConfig.from_yaml(recipe)
    ensure_cache(config)
    config = with_checkpoint_input(config, init)
    extra, extra_val = reviewed_sources(*reviewed_lines(pages, config.model.height), config,
                                        f"ground-truth lines of {len(pages)} page(s)")
    best = train(config, device, extra=extra, init_checkpoint=init, extra_val=extra_val)
    return export_fine_tuned(best, out / "model" / "crnn.onnx", init, f"lines-{len(pages)}-pages")


def with_register_lm(model: Path, pages: list, recipe: Path, out: Path) -> Path:
    """A copy of `model` in `out`/model-lm with the LM `census adapt` builds from the reviewed pages' lines."""
    import shutil

    from pipeline.evaluation.evaluate_lines import DEFAULT_SPLIT_FILE
    from pipeline.htr.lm import build_register_lm
    from pipeline.htr.text import normalize_text
    from pipeline.htr.train import TrainConfig

    copy = out / "model-lm" / model.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".charset.json", ".calibration.json", ".lm.tsv.gz"):
        if model.with_suffix(suffix).exists():
            shutil.copyfile(model.with_suffix(suffix), copy.with_suffix(suffix))
    texts = [normalize_text(line.text) for page in pages for line in page.lines if not line.unread]
    build_register_lm(copy, texts, Path(TrainConfig.from_yaml(recipe).data_dir), DEFAULT_SPLIT_FILE)
    return copy


def judged(samples: list, readings: list[str], confidences: list[float], template) -> dict:
    """What routing accepts of the adapted model's readings once reviewers have judged enough of them: they
    answer its readings of the first pages read after the reviewed ones (whole pages, until `MIN_REVIEWED`
    lines, `MIN_ERRORS` of them wrong), the run's calibration is fitted on those answers as `census
    recalibrate` fits an adapted model's (until then none is accepted: its step 0; once fitted, always
    applied), and the pages after them are routed with it. `lines` of those pages, `accepted` their share
    accepted and `accepted_error` the share of those not read exactly right."""
    import numpy as np

    from pipeline.run.recalibrate import MIN_ERRORS, MIN_REVIEWED, fit_run

    pages = np.array([sample.page for sample in samples])
    right = np.array([reading == sample.text for reading, sample in zip(readings, samples)])
    answered = np.zeros(len(samples), bool)
    for page in dict.fromkeys(pages):
        if answered.sum() >= MIN_REVIEWED and (answered & ~right).sum() >= MIN_ERRORS:
            break
        answered |= pages == page
    machine = np.array(confidences, np.float64)
    cells = {"field": np.full(len(samples), None, object), "machine": machine, "answered": answered,
             "right": right, "acceptable": np.ones(len(samples), bool)}
    calibration = fit_run(cells, template, "crnn", "adapted", (int(answered.sum()), None), adapted=True)
    accepted = (calibration.confidence(machine) >= calibration.review_threshold) & ~answered
    taken = int(accepted.sum())
    return {"judged_pages": len(set(pages[answered])), "judged_lines": int(answered.sum()),
            "fitted": calibration.fitted, "applied": calibration.applied,
            "review_threshold": calibration.review_threshold, "lines": int((~answered).sum()),
            "accepted": round(taken / max(int((~answered).sum()), 1), 4),
            "accepted_error": round(int((accepted & ~right).sum()) / taken, 4) if taken else 0.0}


def figures(score) -> dict:
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in score.model_dump(
        include={"cer", "wer", "lines", "chars", "exact", "accepted", "accepted_error", "routed_accepted",
                 "routed_accepted_error", "ece"}).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gt_dir", type=Path, help="A register's images with ALTO/PAGE XML lines.")
    parser.add_argument("--review-pages", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=20.0, help="Fine-tuning time budget.")
    parser.add_argument("--config", type=Path, help="Fine-tuning recipe (default models/crnn-finetune.yaml).")
    parser.add_argument("--cache-dir", help="The recipe's data cache (replayed old hands) instead of its own.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--adapted", type=Path, help="An ONNX adapted before on the same pages: no training.")
    parser.add_argument("--out", type=Path, default=Path("runs/adaptation"))
    args = parser.parse_args()

    from pipeline.evaluation.evaluate_lines import collect_lines, read_and_score
    from pipeline.htr.data import find_pages
    from pipeline.htr.train import write_recipe
    from pipeline.run.runner import DEFAULT_TEMPLATE
    from pipeline.stages.templates import load_template

    pages = sorted(find_pages(args.gt_dir), key=lambda page: page.stem)
    reviewed, rest = pages[:args.review_pages], pages[args.review_pages:]
    if not reviewed or not rest:
        sys.exit(f"adaptation: {len(pages)} pages in {args.gt_dir}: too few for {args.review_pages} reviewed")
    out = args.out / f"review-{args.review_pages}"
    recipe = write_recipe(args.config, out / "training", time_budget_s=60 * args.minutes, cache_dir=args.cache_dir)
    model = args.adapted or adapt_on_lines(reviewed, recipe, out, args.device)
    with_lm = with_register_lm(model, reviewed, recipe, out)
    template = load_template(DEFAULT_TEMPLATE)
    samples = collect_lines(args.gt_dir, pages=[page.stem for page in rest])
    (shipped, _, _), (shipped_lm, _, _), (adapted, readings, confidences) = [
        read_and_score(name, samples, template.review_threshold)
        for name in ("crnn", f"crnn:{model}", f"crnn:{with_lm}")]
    print(json.dumps({"gt_dir": str(args.gt_dir), "review_pages": [page.stem for page in reviewed],
                      "test_pages": len(rest), "minutes": args.minutes, "model": str(with_lm),
                      "shipped": figures(shipped), "adapted_shipped_lm": figures(shipped_lm),
                      "adapted": figures(adapted), "judged": judged(samples, readings, confidences, template)}))


if __name__ == "__main__":
    main()
