"""`census eval GT_DIR` lines mode on a small fixture (rendered pages with ALTO and PAGE XML) and on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.evaluation.evaluate_lines import evaluate_lines, score_engine
from pipeline.recognize.crnn import DEFAULT_MODEL
from tests.test_htr import write_gt_page

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_model = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="models/crnn.onnx not shipped")


@pytest.fixture(scope="module")
def gt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gt")
    write_gt_page(folder, "page-a", ["Josep Puig", "jornaler", "Barcelona"], seed=1)
    write_gt_page(folder, "page-b", ["filla", "12-3-1890", "XXX Serra"], page_xml=True, seed=2)
    return folder


def test_scores_are_jiwer_cer_and_wer_per_page() -> None:
    from pipeline.evaluation.evaluate_lines import LineSample

    samples = [LineSample("p1", "a", "abcd", None), LineSample("p2", "b", "ef gh", None)]  # type: ignore[arg-type]
    score = score_engine("x", samples, ["abed", "ef gh"], [0.5, 0.5], 0.9, 1.0)
    assert score.cer == pytest.approx(1 / 9) and score.wer == pytest.approx(1 / 3)
    assert [p.cer for p in score.pages] == [0.25, 0.0] and score.exact == 0.5 and score.chars == 9


def test_accepted_lines_are_those_at_the_threshold_and_their_error_is_measured() -> None:
    from pipeline.evaluation.evaluate_lines import LineSample

    samples = [LineSample("p", str(i), text, None) for i, text in enumerate(["ab", "cd", "ef", "gh"])]  # type: ignore[arg-type]
    # confident and right, confident and wrong, at the threshold and right, under it and wrong
    score = score_engine("x", samples, ["ab", "cx", "ef", "gx"], [0.99, 0.95, 0.9, 0.5], 0.9, 1.0)
    assert score.accepted == 0.75 and score.accepted_error == pytest.approx(1 / 3) and score.threshold == 0.9
    # ECE over 15 bins: 0.99 and 0.95 share the top bin (mean 0.97, half right), 0.9 and 0.5 are alone
    assert score.ece == pytest.approx(0.5 * abs(0.97 - 0.5) + 0.25 * abs(0.9 - 1) + 0.25 * 0.5)
    stricter = score_engine("x", samples, ["ab", "cx", "ef", "gx"], [0.99, 0.95, 0.9, 0.5], 0.98, 1.0)
    assert stricter.accepted == 0.25 and stricter.accepted_error == 0.0


def test_routed_acceptance_sends_a_page_of_seldom_accepted_lines_to_review_whole() -> None:
    """The page rule of routing on lines: 20 lines of a page of which 5 pass (under 30%) all go to review;
    a page of 20 with 10 passing keeps them, and so does a page too short to judge."""
    from pipeline.evaluation.evaluate_lines import LineSample

    pages = {"strange": 5, "familiar": 10, "short": 1}
    sizes = {"strange": 20, "familiar": 20, "short": 3}
    samples, hypotheses, confidences = [], [], []
    for page, passing in pages.items():
        for i in range(sizes[page]):
            samples.append(LineSample(page, str(i), "ab", None))  # type: ignore[arg-type]
            hypotheses.append("ab" if i % 5 else "ax")  # every fifth line misread
            confidences.append(0.95 if i < passing else 0.5)
    score = score_engine("x", samples, hypotheses, confidences, 0.9, 1.0)
    assert score.accepted == pytest.approx(16 / 43) and score.accepted_error == pytest.approx(4 / 16)
    assert score.routed_accepted == pytest.approx(11 / 43) and score.routed_accepted_error == pytest.approx(3 / 11)


@needs_model
def test_eval_lines_on_fixture_skips_unread_lines(gt_dir: Path) -> None:
    report = evaluate_lines(gt_dir, "crnn,null")
    crnn, null = report.engines
    assert crnn.lines == null.lines == 5  # the `XXX` line is excluded
    assert {p.page for p in crnn.pages} == {"page-a", "page-b"}
    assert null.cer == 1.0 and crnn.cer < 0.5


@needs_model
def test_census_eval_prints_json_last_line(gt_dir: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(gt_dir), "--engine", "crnn"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"cer", "wer", "lines", "chars"} <= set(summary) and summary["lines"] == 5
    assert summary["threshold"] == 0.9  # the default template's review threshold
    assert 0 <= summary["accepted"] <= 1 and 0 <= summary["accepted_error"] <= 1 and 0 <= summary["ece"] <= 1
    assert summary["engines"][0]["accepted"] == summary["accepted"]
    assert "page-a" in result.stdout and "accepted at 0.9 " in result.stdout
    assert "crnn: reading 5 lines" in result.stderr  # progress on stderr, the report alone on stdout


def test_census_eval_on_folder_without_ground_truth_is_a_usage_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "eval", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "no ground-truth pages" in result.stderr


@needs_model
@pytest.mark.skipif(not (DATA / "lectaurep").is_dir(), reason="real data not in ../shared/data")
def test_census_eval_runs_on_a_real_register_folder_as_is() -> None:
    folder = DATA / "lectaurep" / "lectaurep-dufour-1"
    result = CliRunner().invoke(app, ["eval", str(folder), "--pages", "DAFANCH96_048MIC07644_L-1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["lines"] > 20 and 0 <= summary["cer"] < 0.5
