"""What a register gains per page reviewed: the reports of `pipeline.evaluation.adaptation` (one JSON object
each, N reviewed pages of one register) as curves of the other pages' CER and of the share of their lines a
reviewer still has to see, against N, for the adapted model and for the shipped one on the same pages
(`python -m pipeline.evaluation.adaptation_curve REPORT.json ... --out PNG`). Prints the table in Markdown.

Lines to review are routed as a run routes them: the shipped model's with its calibration and the page rule;
the adapted model's by the run's own calibration (`judged`): every line of the pages its reviewers answer to
fit it, then what its fit sends to review on the pages after them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ValidationError


class Figures(BaseModel):
    cer: float
    to_review: float  # share of the lines a run sends to review: not accepted after routing's page rule
    accepted_error: float | None  # wrong among the lines a run accepts


class Point(BaseModel):
    """N reviewed pages of a register: the shipped and the adapted model on its other pages."""
    review_pages: int
    test_pages: int
    shipped: Figures
    adapted: Figures


def figures_of(scores: dict) -> Figures:
    return Figures(cer=scores["cer"], to_review=1 - scores["routed_accepted"],
                   accepted_error=scores["routed_accepted_error"] if scores["routed_accepted"] else None)


def adapted_figures(scores: dict, judged: dict) -> Figures:
    """The adapted model's CER and, over all the other pages, the lines a run with it sends to review: the
    judged pages' every line, and those its fitted calibration does not accept on the pages after them."""
    answered, after = judged["judged_lines"], judged["lines"]
    to_review = (answered + (1 - judged["accepted"]) * after) / max(answered + after, 1)
    return Figures(cer=scores["cer"], to_review=to_review,
                   accepted_error=judged["accepted_error"] if judged["accepted"] else None)


def points(reports: list[dict]) -> dict[str, list[Point]]:
    """{register: its points in order of N}."""
    curves: dict[str, list[Point]] = defaultdict(list)
    for report in reports:
        curves[Path(report["gt_dir"]).name].append(Point(
            review_pages=len(report["review_pages"]), test_pages=report["test_pages"],
            shipped=figures_of(report["shipped"]), adapted=adapted_figures(report["adapted"], report["judged"])))
    return {register: sorted(curve, key=lambda point: point.review_pages) for register, curve in sorted(curves.items())}


def plot(curves: dict[str, list[Point]], out: Path) -> None:
    """CER and lines to review against N: adapted solid, the shipped model on the same pages dashed."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    matplotlib.use("Agg")
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    cer_axes, review_axes = figure.subplots(1, 2)
    for index, (register, curve) in enumerate(curves.items()):
        colour, ns = f"C{index}", [point.review_pages for point in curve]
        for axes, value in ((cer_axes, lambda f: f.cer), (review_axes, lambda f: f.to_review)):
            axes.plot(ns, [100 * value(point.adapted) for point in curve], marker="o", color=colour,
                      label=f"{register}, adapted")
            axes.plot(ns, [100 * value(point.shipped) for point in curve], linestyle="--", marker="x", color=colour,
                      label=f"{register}, shipped")
    for axes, title in ((cer_axes, "CER on the other pages (%)"), (review_axes, "lines still to review (%)")):
        axes.set_xlabel("pages reviewed")
        axes.set_title(title, fontsize=10)
        axes.set_ylim(0, 100 if axes is review_axes else None)
        axes.grid(alpha=0.3)
    cer_axes.legend(fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def markdown(curves: dict[str, list[Point]]) -> str:
    rows = ["| register | pages reviewed | other pages | CER shipped → adapted | lines still to review | "
            "wrong among accepted |", "|---|---|---|---|---|---|"]
    for register, curve in curves.items():
        for point in curve:
            shipped, adapted = point.shipped, point.adapted
            rows.append(f"| {register} | {point.review_pages} | {point.test_pages} | {_percent(shipped.cer)} → "
                        f"**{_percent(adapted.cer)}** | {_percent(shipped.to_review)} → {_percent(adapted.to_review)} | "
                        f"{_percent(shipped.accepted_error)} → {_percent(adapted.accepted_error)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", type=Path, nargs="+", help="JSON reports of pipeline.evaluation.adaptation.")
    parser.add_argument("--out", type=Path, required=True, help="The PNG to write.")
    args = parser.parse_args()
    reports = []
    for path in args.reports:
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
            points(reports[-1:])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValidationError) as error:
            sys.exit(f"adaptation_curve: {path}: not a report ({type(error).__name__}: {error})")
    curves = points(reports)
    plot(curves, args.out)
    print(markdown(curves))
    print(f"curve written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
