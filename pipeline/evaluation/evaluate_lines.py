"""`census eval GT_DIR` in lines mode: recognise every ground-truth text line, report CER and WER.

For every image with an ALTO v4 or PAGE XML of the same stem beside it, each ground-truth line is
cropped by its polygon (outside painted paper-white), recognised by the engine(s), and compared with
its transcription after the same normalisation (`pipeline.htr.text`: NFC, `ŀ`→`l·l`, superscript `^`
dropped). Lines containing `XXX` (unread words) are excluded. CER and WER come from jiwer, overall
and per page. Several engines can be run on the very same lines for a side-by-side comparison.

Each engine's confidences are checked against its exactness as routing would use them: `accepted` is
the share of lines whose confidence reaches the register template's review threshold, `accepted_error`
the share of those not read exactly right, `ece` the expected calibration error
(`pipeline.evaluation.reliability`, as `census calibrate` measures it). `routed_accepted` and
`routed_accepted_error` are the same after routing's page rule (`unfamiliar-hand`, `pipeline.stages.route`: a
page whose lines are seldom accepted goes to review whole), each XML page standing for a register page: what a
run would leave unreviewed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from pipeline.errors import UsageError
from pipeline.htr.data import GtPage, find_pages, line_crops, unit_of
from pipeline.htr.text import normalize_text
from pipeline.models import Reading
from pipeline.recognize import register

DEFAULT_SPLIT_FILE = Path(__file__).resolve().parents[2] / "models" / "crnn.split.json"


@dataclass
class LineSample:
    page: str
    line_id: str
    text: str
    crop: np.ndarray


class PageScore(BaseModel):
    page: str
    lines: int
    chars: int
    cer: float
    wer: float


class EngineScore(BaseModel):
    engine: str
    cer: float
    wer: float
    lines: int
    chars: int
    exact: float  # fraction of lines read exactly right
    threshold: float  # the template's review threshold the two next figures are measured at
    accepted: float  # fraction of lines whose confidence >= threshold (what routing would accept)
    accepted_error: float  # fraction of those accepted lines not read exactly right
    # the same after the page rule of routing (`unfamiliar-hand`: a page whose lines are seldom accepted goes
    # to review whole), i.e. what a run would leave unreviewed
    routed_accepted: float = 0.0
    routed_accepted_error: float = 0.0
    ece: float  # expected calibration error of the confidences against exactness
    seconds: float
    pages: list[PageScore]


class LinesReport(BaseModel):
    gt_dir: str
    split: str | None
    engines: list[EngineScore]


def page_split(page: GtPage, split: dict[str, dict[str, list[str]]]) -> str | None:
    """Which split (train/val/test) a page belongs to, by its will (poilus) or its own stem."""
    for name, corpora in split.items():
        for corpus, units in corpora.items():
            if unit_of(page.stem, corpus) in units:
                return name
    return None


def select_pages(pages: list[GtPage], split: str | None, names: list[str] | None, split_file: Path) -> list[GtPage]:
    if names:
        pages = [page for page in pages if page.stem in set(names)]
    if split:
        if not split_file.exists():
            raise UsageError(f"--split needs the split file {split_file}")
        recorded = json.loads(split_file.read_text())
        pages = [page for page in pages if page_split(page, recorded) == split]
    if not pages:
        raise UsageError("no ground-truth pages selected (images with an ALTO/PAGE XML of the same stem)")
    return pages


def collect_lines(gt_dir: Path, split: str | None = None, pages: list[str] | None = None,
                  split_file: Path = DEFAULT_SPLIT_FILE) -> list[LineSample]:
    """Crops and normalised transcriptions of every readable ground-truth line of the selected pages."""
    from tqdm import tqdm

    samples = []
    for page in tqdm(select_pages(find_pages(gt_dir), split, pages, split_file), desc="cropping lines", unit="page",
                     file=sys.stderr):
        samples.extend(LineSample(page.stem, line.line_id, line.text, crop) for line, crop in line_crops(page))
    return samples


def _error_rates(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    import jiwer

    return float(jiwer.cer(references, hypotheses)), float(jiwer.wer(references, hypotheses))


class TesseractLineEngine:
    """Baseline for the side-by-side comparison: tesseract on each line crop alone, as one text line
    (`--psm 7`). The `tesseract` engine stacks cell crops into one image, which suits printed cells
    but gave no words at all on these handwritten line crops."""

    name = "tesseract-line"

    def __init__(self, lang: str = "fra") -> None:
        self.model = f"tesseract:{lang}:psm7"
        self.lang = lang

    def recognize(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        import os

        import pytesseract

        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        texts = [pytesseract.image_to_string(crop, lang=self.lang, config="--psm 7", timeout=30) for crop in crops]
        return [Reading(text=text.strip(), confidence=0.0, engine=self.name, model=self.model) for text in texts]


@register("tesseract-line")
def make_tesseract_line_engine(lang: str = "fra") -> TesseractLineEngine:
    return TesseractLineEngine(lang)


def score_engine(name: str, samples: list[LineSample], hypotheses: list[str], confidences: list[float],
                 threshold: float, seconds: float) -> EngineScore:
    from pipeline.evaluation.reliability import accepted_at, reliability

    references = [sample.text for sample in samples]
    cer, wer = _error_rates(references, hypotheses)
    pages = []
    for page in dict.fromkeys(sample.page for sample in samples):
        indices = [i for i, sample in enumerate(samples) if sample.page == page]
        page_cer, page_wer = _error_rates([references[i] for i in indices], [hypotheses[i] for i in indices])
        pages.append(PageScore(page=page, lines=len(indices), chars=sum(len(references[i]) for i in indices),
                               cer=page_cer, wer=page_wer))
    correct = np.array([h == r for h, r in zip(hypotheses, references)], float)
    checked = reliability(np.array(confidences, float), correct, 1.0 - threshold, threshold, fixed=True)
    routed, routed_error = accepted_at(routed_confidences(samples, confidences, threshold), correct, threshold)
    return EngineScore(engine=name, cer=cer, wer=wer, lines=len(samples), chars=sum(map(len, references)),
                       exact=float(correct.mean()), threshold=threshold, accepted=checked.accepted,
                       accepted_error=checked.accepted_error, routed_accepted=routed,
                       routed_accepted_error=routed_error, ece=checked.ece, seconds=seconds, pages=pages)


def routed_confidences(samples: list[LineSample], confidences: list[float], threshold: float) -> np.ndarray:
    """The confidences with every line of a page that routing's page rule sends to review whole set to 0."""
    from pipeline.stages.route import few_accepted

    routed = np.array(confidences, float)
    pages = np.array([sample.page for sample in samples])
    for page in dict.fromkeys(pages):
        on_page = pages == page
        if few_accepted(int(on_page.sum()), int((routed[on_page] >= threshold).sum())):
            routed[on_page] = 0.0
    return routed


def recognise(engine_name: str, samples: list[LineSample], **options: object) -> tuple[list[str], list[float], float]:
    """Normalised readings of the samples' crops, their confidences, and the seconds spent reading."""
    import time

    from pipeline.recognize import get_engine

    engine = get_engine(engine_name, **options)
    # one call, so the engine batches all the lines as it likes (a reading depends a little on its batch)
    print(f"{engine_name}: reading {len(samples)} lines", file=sys.stderr)
    began = time.perf_counter()
    readings = engine.recognize([sample.crop for sample in samples])
    seconds = time.perf_counter() - began
    print(f"{engine_name}: {len(samples)} lines in {seconds:.1f} s", file=sys.stderr)
    return ([normalize_text(reading.text) for reading in readings], [reading.confidence for reading in readings],
            seconds)


def evaluate_lines(gt_dir: Path, engine: str = "crnn", split: str | None = None, pages: list[str] | None = None,
                   split_file: Path = DEFAULT_SPLIT_FILE, template: str | None = None) -> LinesReport:
    """Score each engine of the comma-separated `engine` on the same ground-truth lines of `gt_dir`; acceptance
    is measured at the review threshold of `template` (default: the run's default template)."""
    from pipeline.run.runner import DEFAULT_TEMPLATE
    from pipeline.stages.templates import load_template

    threshold = load_template(template or DEFAULT_TEMPLATE).review_threshold
    samples = collect_lines(Path(gt_dir), split, pages, split_file)
    scores = [read_and_score(name, samples, threshold)[0]
              for name in [part.strip() for part in engine.split(",") if part.strip()]]
    return LinesReport(gt_dir=str(gt_dir), split=split, engines=scores)


def read_and_score(name: str, samples: list[LineSample], threshold: float) -> tuple[EngineScore, list[str], list[float]]:
    """One engine's score on the samples, with its readings and their confidences."""
    options: dict[str, object] = {"lang": "fra"} if name.startswith("tesseract") else {}
    hypotheses, confidences, seconds = recognise(name, samples, **options)
    return score_engine(name, samples, hypotheses, confidences, threshold, seconds), hypotheses, confidences


def summary_line(report: LinesReport, full: bool = False) -> str:
    """One JSON object: the first engine's `cer`, `wer`, `lines`, `chars`, `accepted`, `accepted_error`, `ece`,
    plus every engine's figures."""
    first = report.engines[0]
    engines = [score.model_dump(exclude=None if full else {"pages"}) for score in report.engines]
    headline = first.model_dump(include={"cer", "wer", "lines", "chars", "engine", "threshold", "accepted",
                                         "routed_accepted", "routed_accepted_error",
                                         "accepted_error", "ece"})
    return json.dumps(headline | {"split": report.split, "engines": engines}, ensure_ascii=False)
