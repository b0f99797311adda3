"""What a run's own calibration (`pipeline.run.recalibrate`) does to the accepted cells of a register
(`python -m pipeline.evaluation.recalibration RUN_DIR --review-pages 5 --out DIR`).

The review loop simulated without Label Studio, on a copy of a run made on synthetic pages (the ground truth
beside each scan, `census synth`): every machine-read cell of the first `--review-pages` pages (by source
file; with `--queue-only` only those in the review queue, as a real review goes) is answered with its
ground-truth text, as `census review pull` records a reviewer's answers (a confirmation where the machine
was right); the copy is recalibrated; the other pages are scored before and
after, as `census eval --tables` scores them: written cells auto-accepted and the share of those wrong.
`fit_applied` scores them with the fitted calibration applied whatever `census recalibrate` chose (what
the choice avoided or gained), `fit_applied_with_hand_rule` the same with the `unfamiliar-hand` page rule
kept, to measure whether the run's calibration still needs it. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from pipeline.evaluation.evaluate import groundtruth_for, load_truth, score_page, summarise
from pipeline.models import PageInfo, PageResult
from pipeline.run import store
from pipeline.stages.route import route


def scored_pages(run_dir: Path, skip: int, hand_rule_threshold: float | None = None) -> dict:
    """Written cells accepted and wrong among them on the run's pages after the first `skip` (by source);
    with `hand_rule_threshold`, the stored confidences routed again at it with the unfamiliar-hand rule."""
    with store.connect(run_dir, readonly=True) as connection:
        template = store.stored_template(connection)
        pages = connection.execute("SELECT page_id, source, page_index, width, height FROM pages "
                                   "WHERE status = 'done' ORDER BY source, page_index LIMIT -1 OFFSET ?",
                                   (skip,)).fetchall()
        scores = []
        for page in pages:
            cells = store.page_cells(connection, page["page_id"])
            if hand_rule_threshold is not None:
                cells = route(cells, template.model_copy(update={"review_threshold": hand_rule_threshold}))
            info = PageInfo(page_id=page["page_id"], source=page["source"], page_index=page["page_index"],
                            width=page["width"], height=page["height"])
            truth = load_truth(groundtruth_for(Path(page["source"]), page["page_index"], multi_page=False))
            result = PageResult(page=info, template=template.name, cells=cells)
            scores.append(score_page(result, truth, page["source"]))
    summary = summarise(scores)
    return {"pages": summary.pages, "written_cells": sum(score.written_cells for score in scores),
            "accepted": sum(score.accepted for score in scores), "auto_accepted": summary.auto_accepted,
            "accepted_error": summary.accepted_error}


def copy_store(run_dir: Path, copy: Path) -> Path:
    """A consistent copy of the run's store (its write-ahead log included) in a fresh folder `copy`."""
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    with store.connect(run_dir, readonly=True) as connection, store.connect(copy) as target:
        connection.backup(target)
    return copy


def measure(run_dir: Path, review_pages: int, out: Path, queue_only: bool = False) -> dict:
    """Review the first pages of a copy of `run_dir` from the ground truth, recalibrate, score the others;
    and score them with the fit applied whatever step 4 chose, with and without the page rule."""
    from pipeline.htr.newhand import review_from_truth
    from pipeline.run import recalibrate

    copy = copy_store(run_dir, out / "run")
    before = scored_pages(copy, review_pages)
    answered = review_from_truth(copy, pages=review_pages, whole_pages=not queue_only)
    print(f"recalibration: {answered} cells of {review_pages} pages answered from the ground truth",
          file=sys.stderr)
    summary = recalibrate.recalibrate(copy)
    result = {"run": str(run_dir), "review_pages": review_pages, "queue_only": queue_only,
              "answered": answered, "recalibration": summary.model_dump(), "before": before,
              "after": scored_pages(copy, review_pages)}
    calibration = summary.calibration
    if calibration.fitted:
        applied = copy_store(copy, out / "applied")
        with store.connect(applied) as connection:
            recalibrate.reroute(connection, calibration.model_copy(update={"applied": True}),
                                store.stored_template(connection))
        result["fit_applied"] = scored_pages(applied, review_pages)
        result["fit_applied_with_hand_rule"] = scored_pages(applied, review_pages,
                                                            calibration.review_threshold)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="A run of synthetic pages (`census run SCANS --out DIR`).")
    parser.add_argument("--review-pages", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/recalibration"),
                        help="Where the run's copy is reviewed.")
    parser.add_argument("--queue-only", action="store_true",
                        help="Answer only the review queue of those pages, as a real review does.")
    args = parser.parse_args()
    print(json.dumps(measure(args.run_dir, args.review_pages, args.out, args.queue_only)))


if __name__ == "__main__":
    main()
