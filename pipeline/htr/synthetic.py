"""Synthetic census cells: register vocabulary rendered with handwriting fonts, as cell crops.

Texts are drawn from the lexicons (given names, surnames, places, occupations, streets), the
templates' vocabularies (relation, sex, marital status, literacy), ages, dates, house numbers and
ditto marks (`id.`, `ídem`, `d°`, `"`). Rendering is `pipeline.synth.fonts.render_text` (slant,
stroke width, ink level); this module adds what a cell crop of a ruled register has: a paper grey,
ruling lines crossing the crop near its edges, and margins. Fonts are split: `TEST_FONTS` never
appear in training so the synthetic test measures generalisation to an unseen "hand".
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from pipeline.htr.text import normalize_text

TEST_FONTS = ("Kristi.ttf", "dkgBI.ttf")
MONTHS = ("gener febrer març abril maig juny juliol agost setembre octubre novembre desembre "
          "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre "
          "janvier février mars avril mai juin juillet août septembre octobre novembre décembre").split()
DITTOS = ("id.", "íd.", "ídem", "idem", "d°", '"', "id", "〃")


def font_split() -> dict[str, list[Path]]:
    """Handwriting fonts for training and the held-out ones for the synthetic test."""
    from pipeline.synth.fonts import extra_handwriting_fonts, handwriting_fonts

    fonts = handwriting_fonts()
    return {"train": [f for f in fonts if f.name not in TEST_FONTS] + extra_handwriting_fonts(),
            "test": [f for f in fonts if f.name in TEST_FONTS]}


@cache
def register_vocabularies() -> dict[str, tuple[str, ...]]:
    from pipeline.lexicons import load_lexicon
    from pipeline.stages.templates import available_templates, load_template

    vocab = {name: tuple(load_lexicon(name)) for name in ("given_names", "surnames", "places", "occupations", "streets")}
    words: set[str] = set()
    for path in available_templates().values():
        for column in load_template(path).columns:
            for variants in (column.vocabulary or {}).values():
                words.update(variants)
    vocab["categorical"] = tuple(sorted(words))
    return vocab


def _name(rng: np.random.Generator, vocab: dict[str, tuple[str, ...]]) -> str:
    given = str(rng.choice(vocab["given_names"]))
    if rng.random() < 0.2:
        given += " " + str(rng.choice(vocab["given_names"]))
    surnames = " ".join(str(s) for s in rng.choice(vocab["surnames"], size=int(rng.integers(1, 3))))
    form = rng.random()
    return f"{surnames}, {given}" if form < 0.3 else f"{given} {surnames}" if form < 0.8 else surnames if form < 0.9 else given


def _date(rng: np.random.Generator) -> str:
    day, month, year = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(1840, 1941))
    form = rng.integers(0, 4)
    return [f"{day}-{month}-{year}", f"{day}/{month:02d}/{year}", f"{day} {MONTHS[int(rng.integers(len(MONTHS)))]} {year}",
            str(year)][form]


def _age(rng: np.random.Generator) -> str:
    if rng.random() < 0.1:
        return f"{int(rng.integers(1, 12))} {rng.choice(['m.', 'mesos', 'meses', 'mois'])}"
    return str(int(rng.integers(0, 96)))


def sample_text(rng: np.random.Generator) -> str:
    """One cell's text, in the proportions a register page has them."""
    vocab = register_vocabularies()
    kind = rng.random()
    if kind < 0.25:
        text = _name(rng, vocab)
    elif kind < 0.35:
        text = str(rng.choice(vocab["places"]))
    elif kind < 0.45:
        text = str(rng.choice(vocab["occupations"]))
    elif kind < 0.52:
        street = str(rng.choice(vocab["streets"]))
        text = f"{street}, {int(rng.integers(1, 200))}" if rng.random() < 0.6 else street
    elif kind < 0.67:
        text = str(rng.choice(vocab["categorical"]))
    elif kind < 0.77:
        text = _age(rng)
    elif kind < 0.87:
        text = _date(rng)
    elif kind < 0.93:
        text = str(int(rng.integers(1, 2000)))
    else:
        text = str(rng.choice(DITTOS))
    if rng.random() < 0.05:
        text = text.upper()
    return normalize_text(text)


def _add_ruling(cell: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Printed ruling lines crossing the crop near its edges, as a loose cell crop catches them."""
    import cv2

    height, width = cell.shape
    level = int(rng.integers(60, 170))
    for _ in range(int(rng.integers(0, 3))):
        if rng.random() < 0.6:  # horizontal line near top or bottom
            y = int(rng.integers(0, max(1, height // 8))) if rng.random() < 0.5 else height - 1 - int(rng.integers(0, max(1, height // 8)))
            tilt = int(rng.integers(-2, 3))
            cv2.line(cell, (0, y), (width - 1, y + tilt), level, int(rng.integers(1, 3)))
        else:  # vertical line near left or right
            x = int(rng.integers(0, max(1, width // 20))) if rng.random() < 0.5 else width - 1 - int(rng.integers(0, max(1, width // 20)))
            cv2.line(cell, (x, 0), (x, height - 1), level, int(rng.integers(1, 3)))
    return cell


def render_cell(text: str, font: Path, rng: np.random.Generator) -> np.ndarray:
    """A grey cell crop of `text`: rendered handwriting on paper grey with margins and ruling lines."""
    from pipeline.synth.fonts import render_text

    ink = render_text(text, font, int(rng.integers(28, 64)), rng)
    height = ink.shape[0]
    top, bottom = (int(v) for v in rng.integers(2, max(3, height // 3), size=2))
    left, right = (int(v) for v in rng.integers(2, max(3, height // 2), size=2))
    cell = np.pad(ink, ((top, bottom), (left, right)), constant_values=255)
    paper = int(rng.integers(190, 250))
    cell = (cell.astype(np.float32) * paper / 255).astype(np.uint8)
    return _add_ruling(cell, rng) if rng.random() < 0.7 else cell


def synthetic_cells(count: int, fonts: list[Path], seed: int) -> tuple[list[np.ndarray], list[str]]:
    """`count` (crop, text) pairs rendered with `fonts`, reproducible from `seed`; each text in one
    of the fonts that draw all its letters (texts none of them draws are skipped)."""
    from pipeline.errors import UsageError
    from pipeline.synth.fonts import font_draws

    rng = np.random.default_rng(seed)
    crops, texts = [], []
    skipped = 0
    while len(crops) < count:
        text = sample_text(rng)
        if not text:
            continue
        drawing = [font for font in fonts if font_draws(font, text)]
        if not drawing:  # a glyph no font has: its label would not match the image
            skipped += 1
            if skipped > 100 + count:
                raise UsageError(f"the fonts {[font.name for font in fonts]} cannot write the register texts "
                                 "(handwriting fonts missing? `make system-packages` installs them)")
            continue
        crops.append(render_cell(text, drawing[int(rng.integers(len(drawing)))], rng))
        texts.append(text)
    return crops, texts


def page_cells(count: int, fonts: list[Path], seed: int) -> tuple[list[np.ndarray], list[str]]:
    """`count` (crop, text) pairs of the written cells of synthetic register pages in `fonts`, cut as the
    pipeline cuts them (`pipeline.stages.cells.text_crop`): what whole pages ask of the recogniser and single
    rendered cells rarely show — small short words in wide cells (`no`, `H`), ditto marks drawn as
    strokes, long dates, the page's blur and noise. Pages alternate the shipped templates, unskewed (the
    pipeline deskews first); a second clerk's rows in a font outside `fonts` are left out."""
    from pipeline.stages.cells import text_crop
    from pipeline.models import BBox
    from pipeline.synth.page import render_page
    from pipeline.stages.templates import available_templates, load_template

    templates = [load_template(path) for path in available_templates().values()]
    allowed = {font.name for font in fonts}
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    texts: list[str] = []
    for page in range(count):  # far more than needed: ~100 written cells a page
        font = fonts[int(rng.integers(len(fonts)))]
        image, truth = render_page(templates[page % len(templates)], int(rng.integers(2**31)), 0.0,
                                   overrides={"hand_font": str(font), "skew_deg": 0.0})
        second_font, second_from = truth.render["second_hand_font"], truth.render["second_hand_from_row"]
        for cell in truth.cells:
            text = normalize_text(cell.text)
            if not text.strip() or (second_font not in (None, *allowed) and cell.row >= second_from):
                continue
            crops.append(text_crop(image, BBox.around(cell.polygon)))
            texts.append(text)
            if len(crops) == count:
                return crops, texts
    return crops, texts


def evaluate_synthetic(engine_name: str = "crnn", count: int = 1000, seed: int = 777) -> dict:
    """CER, WER and exact-match rate of an engine on fresh synthetic cells in the held-out fonts, then the
    CER of each held-out font alone (`count / fonts` cells each, same seed): their difficulty differs widely."""
    from pipeline.recognize import get_engine

    engine = get_engine(engine_name)
    fonts = font_split()["test"]
    per_font = {font.name: _scores(engine, *synthetic_cells(max(count // len(fonts), 1), [font], seed))["cer"]
                for font in fonts}
    return {"engine": engine_name, "cells": count, "seed": seed, "fonts": list(TEST_FONTS),
            **_scores(engine, *synthetic_cells(count, fonts, seed)), "per_font_cer": per_font}


def _scores(engine, crops: list[np.ndarray], texts: list[str]) -> dict[str, float]:
    import jiwer

    hypotheses = [normalize_text(reading.text) for reading in engine.recognize(crops)]
    return {"cer": float(jiwer.cer(texts, hypotheses)), "wer": float(jiwer.wer(texts, hypotheses)),
            "exact": float(np.mean([h == t for h, t in zip(hypotheses, texts)]))}


def main() -> None:
    """`python -m pipeline.htr.synthetic [--engine crnn] [--count N] [--seed S]`: one JSON line on stdout."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--engine", default="crnn")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args()
    print(json.dumps(evaluate_synthetic(args.engine, args.count, args.seed)))


if __name__ == "__main__":
    main()
