"""The leave-archive-out check of a page-aware calibration (`pipeline.evaluation.familiarity`)."""

from __future__ import annotations

import numpy as np

from pipeline.evaluation.familiarity import PageCalibration, fit_page_calibration, measure


def simulated_pages(seed: int, archives: list[str]) -> list[dict]:
    """Pages of a familiar hand (most readings sure, and right more often than they say) and of a strange
    one (most unsure, and there even the sure ones often wrong), half and half in every archive."""
    rng = np.random.default_rng(seed)
    records = []
    for archive in archives:
        for page in range(40):
            familiar = page % 2 == 0
            z = rng.normal(3.0, 1.0, 30) if familiar else rng.normal(0.5, 1.5, 30)
            right = rng.random(30) < 1 / (1 + np.exp(-(z + (2.0 if familiar else -4.0))))
            records += [{"archive": archive, "page": f"p{page}", "confidence": float(1 / (1 + np.exp(-value))),
                         "correct": bool(ok), "familiar": familiar} for value, ok in zip(z, right)]
    return records


def test_page_calibration_trusts_a_confident_reading_less_on_a_page_of_unsure_ones() -> None:
    records = simulated_pages(1, ["a"])
    confidences = np.array([r["confidence"] for r in records])
    correct = np.array([r["correct"] for r in records])
    pages = np.array([r["page"] for r in records])
    familiar = np.array([r["familiar"] for r in records])
    calibration = fit_page_calibration(confidences, correct, pages)
    corrected = calibration.apply(confidences, pages)
    assert calibration.page_coef > 0
    for hand in (familiar, ~familiar):
        assert abs(corrected[hand].mean() - correct[hand].mean()) < 0.03
    sure = confidences > 0.9
    assert corrected[sure & ~familiar].mean() < corrected[sure & familiar].mean() - 0.2
    assert np.allclose(PageCalibration().apply(confidences, pages), confidences)


def test_each_archive_is_measured_with_a_fit_that_never_saw_it() -> None:
    records = simulated_pages(2, ["copiste", "cremma-mss-18", "timeus-1878"])
    report = measure(records, threshold=0.9)
    assert set(report) == {"copiste", "cremma-mss-18", "timeus-1878"}
    assert report["copiste"]["fitted_on"] == ["cremma-mss-18"]
    assert report["timeus-1878"]["fitted_on"] == ["copiste", "cremma-mss-18"]  # held out: fitted on all the others
    for figures in report.values():
        # the strange hand's sure readings are what the shipped confidences get wrong; the page tells them
        assert figures["page_aware"]["accepted_error"] < 0.5 * figures["shipped"]["accepted_error"]
        assert figures["shipped_page_rule"]["accepted"] <= figures["shipped"]["accepted"]
