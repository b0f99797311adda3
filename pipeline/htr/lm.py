"""A character n-gram language model, and CTC beam-search decoding with it.

Greedy CTC decoding reads every frame alone, so a letter the model half-sees (`ensemble` read
`enemble`, `Rosa` read `Rasa`) stays wrong even when the words around it make it obvious. The LM
is an interpolated Kneser-Ney character model (order 7) of the training transcriptions and the
register vocabulary, kept in backoff form (one log-probability per seen n-gram, one backoff weight
per seen context; natural logs) in `models/<model>.lm.tsv.gz`. `census lm` builds it.

Decoding is flashlight-text's lexicon-free CTC beam search (C++) with this LM scored from Python:
each character scores `log p(frames) + weight * log p_lm(char | previous 6) + bonus`. Frames on
which the recogniser is near-certain of the same label as on the previous frame are dropped before
the search: every path keeps the same score up to rounding, and confident cells cost almost nothing.
A beam of 8 hypotheses (4 tokens a frame, none more than 6 below the best): 16 read 0.1-0.25 CER
points better on the validation lines and cells at nearly twice the cost; a threshold of 10 instead
of 6 changed nothing (±0.03 points) but cost ~40% more.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections import Counter
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from pipeline.errors import UsageError

BOS, EOS = "\x02", "\x03"  # text boundaries inside n-gram keys (never in a normalised transcription)
FORMAT = "census-char-ngram-1"
DEFAULT_ORDER = 7
DISCOUNT = 0.75
WEIGHT, BONUS = 0.6, 1.5  # LM weight and per-character bonus, tuned on the validation lines and cells
CONFIDENT_FRAME = math.log(0.999)
SURE_READING = math.log(0.98)  # greedy readings this likely skip the search: 27-62% of cells, CER +0.03 points at most
SCORE_CACHE = 1 << 17  # (context, char) scores kept per process
# A register's reviewed texts count this many times in its own LM: on the TIME US 1858 register (5 reviewed
# pages, the adapted model reading 40 others) CER 27.7% with the shipped LM, 25.4% at 5, 25.5% at 30.
REGISTER_TEXT_REPEATS = 5


class NgramLM:
    """Backoff character n-gram model: `log p(char | context)` from seen n-grams and backoff weights."""

    def __init__(self, order: int, logprob: dict[str, float], backoff: dict[str, float], vocabulary: int,
                 weight: float = WEIGHT, bonus: float = BONUS) -> None:
        self.order = order
        self.weight, self.bonus = weight, bonus  # how the decoder combines it with the recogniser
        self.logprob = logprob
        self.backoff = backoff
        self.floor = -math.log(vocabulary)  # uniform over the vocabulary: a character never seen at all
        # the searches of a page ask the same (context, char) pairs again and again
        self.score = lru_cache(maxsize=SCORE_CACHE)(self._score)

    def _score(self, context: str, char: str) -> float:
        """Natural-log probability of `char` (or EOS) after `context` (starting with BOS at a text start)."""
        context = context[len(context) - self.order + 1:] if len(context) >= self.order else context
        penalty = 0.0
        for start in range(len(context) + 1):
            history = context[start:]
            found = self.logprob.get(history + char)
            if found is not None:
                return penalty + found
            penalty += self.backoff.get(history, 0.0)
        return penalty + self.floor

    def text_logprob(self, text: str) -> float:
        context = BOS
        total = 0.0
        for char in text + EOS:
            total += self.score(context, char)
            context += char
        return total

    def save(self, path: Path) -> None:
        keys = sorted(set(self.logprob) | set(self.backoff))
        # no time stamp in the gzip header: the same texts give the same file, byte for byte
        with gzip.GzipFile(path, "wb", mtime=0) as raw, io.TextIOWrapper(raw, encoding="utf-8") as out:
            out.write(json.dumps({"format": FORMAT, "order": self.order, "vocabulary": round(math.exp(-self.floor)),
                                  "weight": self.weight, "bonus": self.bonus}) + "\n")
            for key in keys:
                found = self.logprob.get(key)
                out.write(f"{key}\t{'' if found is None else f'{found:.5f}'}\t{self.backoff.get(key, 0.0):.5f}\n")

    @classmethod
    def load(cls, path: Path) -> "NgramLM":
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            header = json.loads(next(lines))
            if header.get("format") != FORMAT:
                raise UsageError(f"{path} is not a census character LM ({FORMAT}): rebuild it with `census lm`")
            logprob, backoff = {}, {}
            for line in lines:
                key, found, weight_of_context = line.rstrip("\n").split("\t")
                if found:
                    logprob[key] = float(found)
                if weight_of_context != "0.00000":
                    backoff[key] = float(weight_of_context)
        return cls(header["order"], logprob, backoff, header["vocabulary"], header["weight"], header["bonus"])


def build_lm(texts: list[str], vocabulary: list[str], order: int = DEFAULT_ORDER, discount: float = DISCOUNT,
             weight: float = WEIGHT, bonus: float = BONUS) -> NgramLM:
    """Interpolated Kneser-Ney over the characters of `texts`, in backoff form. Lower orders use
    continuation counts (in how many contexts an n-gram appears), which is what makes KN good at
    names and words it has seen only in a few places."""
    if order < 1:
        raise UsageError(f"LM order must be at least 1, not {order}")
    counts: Counter[str] = Counter()
    for text in texts:
        if "\t" in text or "\n" in text or BOS in text or EOS in text:
            raise UsageError(f"LM text with a control character: {text!r}")
        padded = BOS + text + EOS
        for end in range(1, len(padded)):
            for start in range(max(0, end - order + 1), end + 1):
                counts[padded[start:end + 1]] += 1
    continuation: Counter[str] = Counter(gram[1:] for gram in counts if len(gram) > 1)
    adjusted = {gram: count if len(gram) == order or gram[0] == BOS else continuation[gram]
                for gram, count in counts.items()}
    totals: Counter[str] = Counter()
    types: Counter[str] = Counter()
    for gram, count in adjusted.items():
        totals[gram[:-1]] += count
        types[gram[:-1]] += 1
    lm = NgramLM(order, {}, {}, len(set(vocabulary) | {EOS}), weight, bonus)
    for gram in sorted(adjusted, key=len):  # lower orders first: each n-gram interpolates with its shorter one
        history, char = gram[:-1], gram[-1]
        lower = math.exp(lm.score(history[1:], char)) if history else math.exp(lm.floor)
        share = discount * types[history] / totals[history]
        lm.logprob[gram] = math.log(max(adjusted[gram] - discount, 0.0) / totals[history] + share * lower)
        lm.backoff[history] = math.log(share)
    return lm


def _line_texts(pages: list, split: str | None, split_file: Path) -> list[str]:
    from pipeline.evaluation.evaluate_lines import select_pages

    return [line.text for page in select_pages(pages, split, None, split_file) for line in page.lines if not line.unread]


def training_texts(pages: list, split: str | None, split_file: Path, corrections: list[Path] = ()) -> list[str]:
    """The LM's texts: transcriptions of the lines of the `split` ground-truth pages (`GtPage`; the
    training split: never validation or test pages; None: every page), reviewers' corrected cells of
    the runs in `corrections`, and the register vocabulary (lexicons, the templates' categories,
    months, ditto marks)."""
    from pipeline.htr.corrections import corrected_texts
    from pipeline.htr.synthetic import DITTOS, MONTHS, register_vocabularies

    lines = _line_texts(pages, split, split_file) if pages else []
    corrected = [text for run_dir in corrections for text in corrected_texts(run_dir)]
    vocabulary = [word for words in register_vocabularies().values() for word in words]
    return lines + corrected + vocabulary + list(MONTHS) + list(DITTOS)


def build_register_lm(model_path: Path, reviewed: list[str], data_dir: Path | None, split_file: Path) -> Path | None:
    """The language model of a register's own recogniser, written beside `model_path`: the shipped LM's
    texts (the training split of `data_dir`'s lines and the register vocabulary) with the register's
    reviewed texts counted REGISTER_TEXT_REPEATS times, so its names, streets and formulas weigh. None,
    the LM there kept, when `data_dir` is missing or holds none of the shipped model's training pages:
    the reviewed texts and the vocabulary alone would make a poorer LM than the shipped one."""
    if data_dir is None or not Path(data_dir).is_dir() or not reviewed:
        return None
    from pipeline.htr.data import find_pages

    charset = json.loads(model_path.with_suffix(".charset.json").read_text(encoding="utf-8"))["charset"]
    try:
        shipped_texts = training_texts(find_pages(Path(data_dir)), "train", split_file)
    except UsageError:  # a folder without the shipped model's training pages
        return None
    texts = shipped_texts + reviewed * REGISTER_TEXT_REPEATS
    path = model_path.with_suffix(".lm.tsv.gz")
    build_lm(texts, charset).save(path)
    return path


def perplexity(lm: NgramLM, texts: list[str]) -> float:
    """Per-character perplexity (end of text included)."""
    return math.exp(-sum(map(lm.text_logprob, texts)) / sum(len(text) + 1 for text in texts))


def build_model_lm(gt_dir: Path | None, model_path: Path, split: str | None, split_file: Path,
                   order: int = DEFAULT_ORDER, corrections: list[Path] = ()) -> dict:
    """Build the LM for `model_path` (written beside it as `<stem>.lm.tsv.gz`); report its size and,
    when the split has validation pages, its perplexity on their lines."""
    if gt_dir is None and not corrections:
        raise UsageError("give a ground-truth folder, reviewed runs (--from-corrections), or both")
    charset_file = model_path.with_suffix(".charset.json")
    if not charset_file.exists():
        raise UsageError(f"no charset for the model: {charset_file}")
    from pipeline.htr.data import find_pages

    charset = json.loads(charset_file.read_text(encoding="utf-8"))["charset"]
    pages = find_pages(gt_dir) if gt_dir is not None else []  # read once: training lines, then validation ones
    texts = training_texts(pages, split, split_file, corrections)
    lm = build_lm(texts, charset, order)
    path = model_path.with_suffix(".lm.tsv.gz")
    lm.save(path)
    try:
        val = _line_texts(pages, "val", split_file) if pages and split else []
    except UsageError:  # a folder of the user's own pages: none of them in the validation split
        val = []
    return {"lm": str(path), "order": order, "texts": len(texts), "ngrams": len(lm.logprob), "val_lines": len(val),
            "val_perplexity": round(perplexity(lm, val), 3) if val else None, "weight": lm.weight, "bonus": lm.bonus}


def frames_to_keep(log_probs: np.ndarray) -> np.ndarray:
    """Indices of the frames the beam search needs: a frame is dropped when it and the previous one
    are near-certain of the same label (blank or a letter), which leaves every path's score as is."""
    best = log_probs.argmax(-1)
    sure = log_probs.max(-1) > CONFIDENT_FRAME
    repeat = np.zeros(len(log_probs), bool)
    repeat[1:] = sure[1:] & sure[:-1] & (best[1:] == best[:-1])
    return np.flatnonzero(~repeat)


class LmDecoder:
    """CTC beam search over `T x C` log-probabilities (class 0 the blank, class i charset[i-1]) with the LM."""

    def __init__(self, lm: NgramLM, charset: list[str], beam: int = 8, token_beam: int = 4, threshold: float = 6.0) -> None:
        from flashlight.lib.text.decoder import CriterionType, LexiconFreeDecoderOptions

        if " " not in charset:
            raise UsageError("the LM decoder needs a space in the model's charset")
        self.lm, self.charset = lm, charset
        self.space = charset.index(" ") + 1
        self.options = LexiconFreeDecoderOptions(
            beam_size=beam, beam_size_token=token_beam, beam_threshold=threshold, lm_weight=lm.weight,
            sil_score=0.0, log_add=True, criterion_type=CriterionType.CTC)

    def decode(self, log_probs: np.ndarray) -> tuple[list[int], list[int], float]:
        """Labels, the frame where each peaks, and the log-probability that this is the right text: the
        greedy reading when it is near-certain (the LM changed none of those on the validation lines
        and cells; its own log-probability stands in), else the beam search's."""
        from pipeline.htr.model import collapse_path

        labels, frames = collapse_path(log_probs.argmax(-1), log_probs)
        certainty = float(log_probs[frames, labels].sum())
        if labels and certainty >= SURE_READING:
            return labels, frames, certainty
        path, log_posterior = self.search(log_probs)
        return *collapse_path(path, log_probs), log_posterior

    def search(self, log_probs: np.ndarray) -> tuple[np.ndarray, float]:
        """The label of every frame on the best path (frames dropped by `frames_to_keep` repeat their
        predecessor), and its text's share of the final beam (the beam's posterior, log)."""
        from flashlight.lib.text.decoder import LexiconFreeDecoder

        kept = frames_to_keep(log_probs)
        emissions = np.ascontiguousarray(log_probs[kept], dtype=np.float32)
        lm = _flashlight_lm_class()(self)  # held here: the C++ search only borrows the Python object
        decoder = LexiconFreeDecoder(self.options, lm, self.space, 0, [])
        hypotheses = decoder.decode(emissions.ctypes.data, *emissions.shape)
        path_at_kept = np.asarray(hypotheses[0].tokens[1:-1])  # the search adds a word boundary at both ends
        path = path_at_kept[np.searchsorted(kept, np.arange(len(log_probs)), side="right") - 1]
        return path, _text_posterior(hypotheses)


def _text_posterior(hypotheses: list) -> float:
    """Log share of the best hypothesis' text in the beam; alignments of one text pool their scores."""
    from itertools import groupby

    texts = [tuple(token for token, _ in groupby(hypothesis.tokens) if token != 0) for hypothesis in hypotheses]
    by_text: dict[tuple[int, ...], float] = {}
    for text, hypothesis in zip(texts, hypotheses):
        by_text[text] = float(np.logaddexp(by_text.get(text, -np.inf), hypothesis.score))
    return by_text[texts[0]] - float(np.logaddexp.reduce(list(by_text.values())))


@cache
def _flashlight_lm_class() -> type:
    from flashlight.lib.text.decoder import LM, LMState

    class FlashlightLM(LM):
        """The n-gram model as flashlight's LM: a state is a prefix (its last characters kept as the context)."""

        def __init__(self, decoder: LmDecoder) -> None:
            LM.__init__(self)
            self.lm, self.charset = decoder.lm, decoder.charset
            self.bonus = self.lm.bonus / self.lm.weight if self.lm.weight else 0.0  # flashlight weights what we return
            self.contexts: dict[LMState, str] = {}
            self.keep = max(self.lm.order - 1, 1)  # characters of context the LM looks at

        def start(self, start_with_nothing: bool) -> LMState:
            state = LMState()
            self.contexts[state] = BOS
            return state

        def score(self, state: LMState, token: int) -> tuple[LMState, float]:
            context, char = self.contexts[state], self.charset[token - 1]
            child = state.child(token)
            if child not in self.contexts:
                self.contexts[child] = (context + char)[-self.keep:]
            return child, self.lm.score(context, char) + self.bonus

        def finish(self, state: LMState) -> tuple[LMState, float]:
            return state, self.lm.score(self.contexts[state], EOS)

    return FlashlightLM
