"""How much a reviewer's corrections teach the recogniser a hand it was never trained on
(`python -m pipeline.htr.newhand`; about 45 minutes on 2 CPU cores with the default 30-minute recipe).

1. Render register pages written in one handwriting font (default Kristi, held out from all training),
   two sets: pages to review and pages to measure on.
2. `census run` the first set, then answer its whole review queue from the ground truth, as a careful
   reviewer would (the right text, or `empty`); cells the machine accepted are left alone.
3. `census train --from-corrections` on that run (the recipe `models/crnn-finetune.yaml` unless given).
4. `census eval --tables` the second set with the shipped model and with the fine-tuned one, and (with
   `--gt`) the real test lines, to see what the old hands lose.

Prints one JSON object on stdout: the corrections used and both models' figures side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

TEMPLATE = "padro-catala-1930"


def render(out_dir: Path, pages: int, seed: int, hand_font: str) -> Path:
    from pipeline.synth.generate import generate_pages

    if not any(out_dir.glob("*.png")):
        generate_pages(out_dir, pages, seed, template=TEMPLATE, overrides={"hand_font": hand_font})
    return out_dir


def review_from_truth(run_dir: Path, pages: int | None = None, whole_pages: bool = False) -> int:
    """Correct every queued cell of the run's first `pages` pages (by source; all by default) to its
    ground-truth text, as `census review pull` records a reviewer's answers; with `whole_pages` every
    machine-read cell, the accepted ones confirmed or corrected too. Returns how many were recorded."""
    from pipeline.run import store
    from pipeline.evaluation.evaluate import groundtruth_for, load_truth, match_boxes
    from pipeline.models import BBox
    from review.pull import Correction, apply_batch

    now = datetime.now(timezone.utc).isoformat()
    with store.connect(run_dir) as connection:
        template = store.stored_template(connection)
        corrections = []
        statuses = ("accepted", "needs_review") if whole_pages else ("needs_review", "needs_review")
        for page_id, source, page_index in connection.execute(
                "SELECT page_id, source, page_index FROM pages WHERE status = 'done' "
                "ORDER BY source, page_index LIMIT ?", (-1 if pages is None else pages,)).fetchall():
            xml = groundtruth_for(Path(source), page_index, multi_page=False)
            queued = connection.execute("SELECT cell_id, x0, y0, x1, y1 FROM cells WHERE page_id = ? AND "
                                        "status IN (?, ?)", (page_id, *statuses)).fetchall()
            if xml is None or not queued:
                continue
            truth = load_truth(xml)
            boxes = [BBox(x0=row["x0"], y0=row["y0"], x1=row["x1"], y1=row["y1"]) for row in queued]
            for i, j in match_boxes(boxes, [cell.bbox for cell in truth]):
                text = truth[j].text.strip()
                corrections.append(Correction(
                    cell_id=queued[i]["cell_id"], new_value=text, new_status="corrected" if text else "empty",
                    reviewer="ground-truth", corrected_at=now, annotation_id=f"newhand:{queued[i]['cell_id']}"))
        added, _ = apply_batch(connection, corrections, template)
    return added


def figures(scans: Path, engine: str, gt_dir: Path | None) -> dict:
    from pipeline.evaluation.evaluate import evaluate_tables
    from pipeline.evaluation.evaluate_lines import evaluate_lines

    pages = evaluate_tables(scans, TEMPLATE, engine).model_dump(exclude={"per_page"})
    result = {"pages": pages}
    for corpus in ("lectaurep", "poilus") if gt_dir else ():
        lines = evaluate_lines(gt_dir / corpus, engine, "test").engines[0]
        result[f"{corpus}_test"] = {"cer": round(lines.cer, 4), "wer": round(lines.wer, 4), "lines": lines.lines}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hand", default="Kristi.ttf", help="Handwriting font file name the pages are written in.")
    parser.add_argument("--review-pages", type=int, default=5)
    parser.add_argument("--review-seed", type=int, default=5001)
    parser.add_argument("--test-pages", type=int, default=10)
    parser.add_argument("--test-seed", type=int, default=5151)
    parser.add_argument("--config", type=Path, help="Fine-tuning recipe (default models/crnn-finetune.yaml).")
    parser.add_argument("--gt", type=Path, help="Also measure the real test lines of GT/lectaurep and GT/poilus.")
    parser.add_argument("--out", type=Path, default=Path("runs/newhand"))
    args = parser.parse_args()

    from pipeline.htr.train import run_training, write_recipe
    from pipeline.run.batch import run
    from pipeline.run.runner import RunOptions

    review_scans = render(args.out / "review-scans", args.review_pages, args.review_seed, args.hand)
    test_scans = render(args.out / "test-scans", args.test_pages, args.test_seed, args.hand)
    run_dir = args.out / "run"
    run([review_scans], RunOptions(out=run_dir, template=TEMPLATE))
    corrections = review_from_truth(run_dir)
    if not corrections:
        sys.exit(f"newhand: no queued cell of {run_dir} matched a ground-truth cell (see its failures.jsonl)")
    print(f"newhand: {corrections} corrections recorded in {run_dir}", file=sys.stderr)
    model = run_training(write_recipe(args.config, args.out / "train"), run_dir, "auto", args.out / "model" / "crnn.onnx")
    print(json.dumps({"hand": args.hand, "review_pages": args.review_pages, "corrections": corrections,
                      "shipped": figures(test_scans, "crnn", args.gt),
                      "fine_tuned": figures(test_scans, f"crnn:{model}", args.gt), "model": str(model)}))


if __name__ == "__main__":
    main()
