"""Does the page say how far to trust a confidence? Leave-archive-out check of a page-aware calibration
(`python -m pipeline.evaluation.familiarity --out runs/familiarity.jsonl`).

The shipped calibration maps one reading's features to the probability it is exactly right; on a hand the
recogniser has never seen, its confident readings are wrong far more often than it says. The page's other
readings tell a familiar hand from a strange one: on a strange hand most of them are unsure. The page-aware
calibration (`PageCalibration`) is a logistic regression of exactness on the reading's calibrated logit and
the median logit of its page's readings.

Each archive's ground-truth lines (at most `--pages` pages each, spread over the archive) are read once by the
shipped `crnn` engine and cached (`--out`, JSON lines). Then, for every archive used to fit, the page-aware
calibration is fitted on the other fitting archives and measured on it; the archives held out whole
(`HELD_OUT`) are measured with the fit on all the fitting ones. Each is reported as the share of its lines
accepted at the template threshold and the share of those wrong: shipped confidences alone, with routing's
page rule (`unfamiliar-hand`), and page-aware. Prints one JSON object.

Measured 2026-12-07 (crnn-2026.12b, 40 pages an archive): not adopted. It took wrong among accepted from
11.3% to 4.6% on CREMMA-MSS-18 and from 2.9% to 1.8% on the LECTAUREP dufour register, but cost the familiar
registers 6-7 points of acceptance, and left the LECTAUREP riant register at 11.5%, where most accepted
readings that are wrong differ from the ground truth only by punctuation (`12.` for `12`). Variants with the
page's share of readings over the threshold, its mean logit, or the product with the reading's logit did
no better (model card, "Honest confidence on unseen archives").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from pipeline.htr.confidence import sigmoid
from pipeline.run.recalibrate import logit

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
EXTERNAL = ROOT / "data-external"
# name: (folder of images and XML, the splits of models/crnn.split.json read, or None for any page)
FAMILIAR = ("val", "test")  # the pages of a training archive that no training step read
FITTING = {
    "lectaurep-dufour-1": (SHARED / "lectaurep" / "lectaurep-dufour-1", FAMILIAR),  # hands the model was trained on
    "lectaurep-riant-4": (SHARED / "lectaurep" / "lectaurep-riant-4", FAMILIAR),
    "poilus": (SHARED / "poilus", FAMILIAR),  # wills, each by its own writer: no writer of these trained it
    "copiste": (EXTERNAL / "Copiste-d-un-jour", None),
    "cremma-mss-18": (EXTERNAL / "CREMMA-MSS-18" / "data", None),
    "timeus-1858": (EXTERNAL / "timeuscorpus" / "data" / "cph_paris_tissage_1858", None),
}
HELD_OUT = {  # no fit and no choice sees these
    "timeus-1878": (EXTERNAL / "timeuscorpus" / "data" / "cph_paris_tissage_1878", None),
    "cremma-mss-20": (EXTERNAL / "CREMMA-MSS-20" / "data", None),
}


def page_medians(values: np.ndarray, pages: np.ndarray) -> np.ndarray:
    """Each value's page's median value."""
    medians = np.empty(len(values))
    for page in dict.fromkeys(pages.tolist()):
        on_page = pages == page
        medians[on_page] = np.median(values[on_page])
    return medians


class PageCalibration(BaseModel):
    """A reading's confidence corrected by its page: exactness regressed on the reading's calibrated logit
    and the median logit of its page's readings."""

    coef: float = 1.0
    page_coef: float = 0.0
    intercept: float = 0.0

    def apply(self, confidences: np.ndarray, pages: np.ndarray) -> np.ndarray:
        """The corrected confidences; `pages[i]` names the page of reading i."""
        z = logit(confidences)
        return sigmoid(self.coef * z + self.page_coef * page_medians(z, np.asarray(pages)) + self.intercept)


def fit_page_calibration(confidences: np.ndarray, correct: np.ndarray, pages: np.ndarray) -> PageCalibration:
    from pipeline.htr.calibrate import fit_logistic

    z = logit(confidences)
    coef, intercept = fit_logistic(np.column_stack([z, page_medians(z, np.asarray(pages))]), correct)
    return PageCalibration(coef=float(coef[0]), page_coef=float(coef[1]), intercept=intercept)


def read_archive(name: str, folder: Path, splits: tuple[str, ...] | None, max_pages: int) -> list[dict]:
    """One record per ground-truth line of the pages of `splits`, or of at most `max_pages` pages spread
    evenly over the archive."""
    from pipeline.evaluation.evaluate_lines import DEFAULT_SPLIT_FILE, collect_lines, page_split, recognise
    from pipeline.htr.data import find_pages

    pages = find_pages(folder)
    if splits:
        recorded = json.loads(DEFAULT_SPLIT_FILE.read_text())
        stems = sorted(page.stem for page in pages if page_split(page, recorded) in splits)
    else:
        stems = sorted(page.stem for page in pages)
        stems = [stems[int(k * len(stems) / max_pages)] for k in range(min(max_pages, len(stems)))]
    samples = collect_lines(folder, None, stems)
    readings, confidences, _ = recognise("crnn", samples)
    return [{"archive": name, "page": sample.page, "text": sample.text, "reading": reading,
             "confidence": confidence, "correct": reading == sample.text}
            for sample, reading, confidence in zip(samples, readings, confidences)]


def load_or_read(cache: Path, max_pages: int) -> list[dict]:
    """The cached records, reading the archives the cache lacks (and that `make data` has put in place)."""
    records = [json.loads(line) for line in cache.read_text().splitlines()] if cache.exists() else []
    done = {record["archive"] for record in records}
    for name, (folder, splits) in {**FITTING, **HELD_OUT}.items():
        if name in done:
            continue
        if not folder.is_dir():
            print(f"{name}: {folder} missing (make data), left out", file=sys.stderr)
            continue
        new = read_archive(name, folder, splits, max_pages)
        with cache.open("a") as out:
            out.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in new)
        records += new
    return records


def acceptance(confidences: np.ndarray, correct: np.ndarray, threshold: float) -> dict:
    accepted = confidences >= threshold
    return {"accepted": round(float(accepted.mean()), 4),
            "accepted_error": round(float(1 - correct[accepted].mean()), 4) if accepted.any() else 0.0,
            "wrong_accepted": int((accepted & ~correct).sum())}


def measure(records: list[dict], threshold: float) -> dict:
    from pipeline.evaluation.evaluate_lines import LineSample, routed_confidences
    def arrays(names: set[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chosen = [record for record in records if record["archive"] in names]
        return (np.array([record["confidence"] for record in chosen]),
                np.array([record["correct"] for record in chosen]),
                np.array([f"{record['archive']}/{record['page']}" for record in chosen]))

    present = {record["archive"] for record in records}
    fitting = [name for name in FITTING if name in present]
    report = {}
    for name in [*fitting, *(name for name in HELD_OUT if name in present)]:
        fit_on = set(fitting) - {name}
        calibration = fit_page_calibration(*arrays(fit_on))
        confidences, correct, pages = arrays({name})
        samples = [LineSample(page, "", "", np.zeros(0)) for page in pages]
        report[name] = {
            "lines": len(correct), "pages": len(set(pages)), "exact": round(float(correct.mean()), 4),
            "fitted_on": sorted(fit_on), "page_calibration": calibration.model_dump(),
            "shipped": acceptance(confidences, correct, threshold),
            "shipped_page_rule": acceptance(routed_confidences(samples, list(confidences), threshold), correct,
                                            threshold),
            "page_aware": acceptance(calibration.apply(confidences, pages), correct, threshold)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/familiarity.jsonl"), help="the readings' cache")
    parser.add_argument("--pages", type=int, default=40, help="pages read per archive at most")
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(json.dumps(measure(load_or_read(args.out, args.pages), args.threshold), ensure_ascii=False))


if __name__ == "__main__":
    main()
