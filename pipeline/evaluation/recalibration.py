"""What a run's own calibration (`pipeline.run.recalibrate`) does to the accepted cells of a register
(`python -m pipeline.evaluation.recalibration RUN_DIR --review-pages 5 --out DIR`).

The review loop simulated without Label Studio, on a copy of a run made on synthetic pages (the ground truth
beside each scan, `census synth`): every machine-read cell of the first `--review-pages` pages (by source
file) is answered with its ground-truth text, as `census review pull` records a reviewer's answers (a
confirmation where the machine was right); the copy is recalibrated; the other pages are scored before and
after, as `census eval --tables` scores them: written cells auto-accepted and the share of those wrong.
`after_with_hand_rule` (when the run's calibration is applied) routes its confidences with the
`unfamiliar-hand` page rule kept, to measure whether the run's calibration still needs it. Prints one
JSON object on stdout.
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


def measure(run_dir: Path, review_pages: int, out: Path) -> dict:
    """Review the first pages of a copy of `run_dir` from the ground truth, recalibrate, score the others."""
    from pipeline.htr.newhand import review_from_truth
    from pipeline.run.recalibrate import recalibrate

    copy = out / "run"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    with store.connect(run_dir, readonly=True) as connection:  # a consistent copy, WAL included
        with store.connect(copy) as target:
            connection.backup(target)
    before = scored_pages(copy, review_pages)
    answered = review_from_truth(copy, pages=review_pages, whole_pages=True)
    print(f"recalibration: {answered} cells of {review_pages} pages answered from the ground truth",
          file=sys.stderr)
    summary = recalibrate(copy)
    calibration = summary.calibration
    return {"run": str(run_dir), "review_pages": review_pages, "answered": answered,
            "recalibration": summary.model_dump(), "before": before,
            "after": scored_pages(copy, review_pages),
            "after_with_hand_rule": scored_pages(copy, review_pages, calibration.review_threshold)
            if calibration.applied else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="A run of synthetic pages (`census run SCANS --out DIR`).")
    parser.add_argument("--review-pages", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/recalibration"),
                        help="Where the run's copy is reviewed.")
    args = parser.parse_args()
    print(json.dumps(measure(args.run_dir, args.review_pages, args.out)))


if __name__ == "__main__":
    main()
