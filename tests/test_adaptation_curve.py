"""The adaptation curve: reports of `pipeline.evaluation.adaptation` drawn and tabulated in order of N."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def report(review_pages: int, shipped_cer: float, adapted_cer: float, accepted: float) -> dict:
    scores = {"wer": 0.5, "lines": 100, "chars": 3000, "exact": 10, "ece": 0.1}
    return {"gt_dir": "data/register_1878", "review_pages": [f"p{i}" for i in range(review_pages)],
            "test_pages": 20 - review_pages, "minutes": 20.0, "model": "m.onnx",
            "shipped": scores | {"cer": shipped_cer, "accepted": 0.0, "accepted_error": 0.0, "routed_accepted": 0.0,
                                 "routed_accepted_error": 0.0},
            "adapted": scores | {"cer": adapted_cer, "accepted": 0.9, "accepted_error": 0.3,
                                 "routed_accepted": 0.8, "routed_accepted_error": 0.25},
            # the run's own routing: 200 lines of the first pages answered, then its fit on the other 300
            "judged": {"judged_pages": 2, "judged_lines": 200, "fitted": True, "applied": True,
                       "review_threshold": 0.9, "lines": 300, "accepted": accepted, "accepted_error": 0.015}}


def curve(tmp_path: Path, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.evaluation.adaptation_curve", *map(str, paths),
                           "--out", str(tmp_path / "curve.png")], capture_output=True, text=True, timeout=120)


def test_reports_are_drawn_and_tabulated_in_order_of_pages_reviewed(tmp_path: Path) -> None:
    paths = []
    for n, adapted in ((10, 0.2), (2, 0.4)):
        paths.append(tmp_path / f"review-{n}.json")
        paths[-1].write_text(json.dumps(report(n, 0.44, adapted, 0.3)), encoding="utf-8")
    done = curve(tmp_path, *paths)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| register_1878")]
    # to review: the 200 answered lines and 70% of the other 300, of 500: 82%
    assert rows == ["| register_1878 | 2 | 18 | 44.0% → **40.0%** | 100.0% → 82.0% | — → 1.5% |",
                    "| register_1878 | 10 | 10 | 44.0% → **20.0%** | 100.0% → 82.0% | — → 1.5% |"]
    image = np.asarray(Image.open(tmp_path / "curve.png").convert("L"))
    assert image.shape == (384, 960) and image.min() < 100  # something is drawn on the white figure


@pytest.mark.parametrize("text", ["{not json", '{"gt_dir": "x"}', "[1, 2]"])
def test_a_file_that_is_not_a_report_is_named(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="utf-8")
    done = curve(tmp_path, bad)
    assert done.returncode == 1 and "bad.json: not a report" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "curve.png").exists()
