"""Handwriting fonts and the handwriting-like text renderer shared by the synthetic page
generator and the handwriting recogniser's training data.

`handwriting_fonts()` lists the installed handwriting fonts that really draw every letter of
Catalan/Spanish/French registers (à é í ï ò ó ú ü ç ñ, the Catalan middle dot of "l·l"...):
a font whose glyph for one of them is blank, identical to its missing-glyph box, or identical
to the unaccented letter is left out. `render_text()` draws one line of text with light
per-word jitter (baseline, size, spacing), a slant and stroke-width variation, so that two
renderings of the same text never look quite the same. A training recipe adds more hands by file
name or pattern (`installed_fonts`), such as the 49 npm fonts `make fonts` installs (`fontsource.tsv`).
"""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# File-name patterns of the Debian handwriting font packages named in the Makefile
# (fonts-dancingscript, fonts-kaushanscript, fonts-breip, fonts-dkg-handwriting, fonts-kristi).
HANDWRITING_PATTERNS = ("DancingScript-*.otf", "KaushanScript-*.otf", "Breip*.ttf", "breip*.ttf",
                        "dkg*.ttf", "Kristi*.ttf")
# More hands for the recogniser's synthetic training cells only (Makefile installs them too): some
# lack a few Catalan/Spanish letters, so each renders only the texts it draws (`font_draws`).
EXTRA_HANDWRITING_PATTERNS = ("Ecolier-court.ttf", "ComicNeue-Italic.otf", "Joscelyn-Regular.otf", "KleeOne-Regular.ttf",
                              "YuseiMagic-Regular.ttf", "lobster.otf", "Delphine.ttf", "SteveHand.ttf")
PRINT_FONT_NAMES = ("DejaVuSerif.ttf", "DejaVuSans.ttf", "DejaVuSerifCondensed.ttf",
                    "DejaVuSansCondensed.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf")
# Letters a font must draw properly to write Catalan/Spanish/French register entries.
REQUIRED_CHARS = "àéèíïòóúüçñ·ÀÉÈÍÒÓÚÇÑâêôû"
DITTO_MARK = "〃"  # no installed font has it: drawn as two short strokes by render_text


def _find_files(patterns: tuple[str, ...]) -> list[Path]:
    found = {path.resolve() for root in FONT_DIRS if root.is_dir()
             for pattern in patterns for path in root.rglob(pattern)}
    return sorted(found)


@cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _glyph_bitmap(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    image = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(image).text((20, 70), char, font=font, fill=255, anchor="ls")
    return np.asarray(image)


def font_draws(path: Path, chars: str = REQUIRED_CHARS) -> bool:
    """True when `render_text` can write `chars` in this font: every char is a real glyph (not blank,
    not the missing-glyph box, and for accented letters not the same as the bare letter), apart from
    spaces and the ditto mark, which `render_text` strokes itself."""
    return all(_draws_char(Path(path), char) for char in set(chars) - {" ", DITTO_MARK})


@cache
def _draws_char(path: Path, char: str) -> bool:
    font = _font(path, 48)
    bitmap = _glyph_bitmap(font, char)
    if not bitmap.any() or np.array_equal(bitmap, _glyph_bitmap(font, "\ue000")):  # U+E000 renders .notdef
        return False
    base = unicodedata.normalize("NFD", char)[0]
    return base == char or not np.array_equal(bitmap, _glyph_bitmap(font, base))


@cache
def _usable_handwriting_fonts() -> tuple[Path, ...]:
    # one file per (family, style): fonts-breip ships the same font under two names
    by_name = {_font(path, 48).getname(): path for path in reversed(_find_files(HANDWRITING_PATTERNS))}
    return tuple(sorted(path for path in by_name.values() if font_draws(path)))


def handwriting_fonts() -> list[Path]:
    """Installed handwriting fonts that render every Catalan/Spanish/French letter, sorted."""
    return list(_usable_handwriting_fonts())


def extra_handwriting_fonts() -> list[Path]:
    """Installed extra hands (`EXTRA_HANDWRITING_PATTERNS`), whatever letters they draw, sorted."""
    return _find_files(EXTRA_HANDWRITING_PATTERNS)


def installed_fonts(names: list[str]) -> list[Path]:
    """The installed font files a training recipe adds as extra hands: file names, or glob patterns such as
    `fontsource/*.woff` (the npm fonts `make fonts` installs). A name or pattern matching nothing is an error."""
    from pipeline.errors import UsageError

    found = {name: _find_files((name,)) for name in names}
    missing = [name for name, paths in found.items() if not paths]
    if missing:
        raise UsageError(f"fonts not installed: {', '.join(missing)} (`make system-packages fonts` installs them)")
    return sorted({path for paths in found.values() for path in paths})


def font_name(path: Path) -> tuple[str, str]:
    """The font's (family, style), e.g. ("Kristi", "Medium"), whatever its file is called."""
    family, style = _font(Path(path), 48).getname()
    return family or "", style or ""


@cache
def _print_fonts() -> tuple[Path, ...]:
    by_name = {path.name: path for path in _find_files(PRINT_FONT_NAMES)}
    return tuple(by_name[name] for name in PRINT_FONT_NAMES if name in by_name)


def print_fonts() -> list[Path]:
    """Installed print fonts (DejaVu) for the preprinted headers and titles of a register."""
    return list(_print_fonts())


@cache
def _size_for_height(path: Path, height_px: int) -> int:
    """Font size whose ascender-to-descender ink height ("Hdlgjy") is about `height_px` pixels.
    Measured on the glyphs, not the font's metrics: some fonts (dkg) declare huge line heights."""
    _, top, _, bottom = _font(path, 100).getbbox("Hdlgjy", anchor="ls")
    return max(6, round(100 * height_px / max(1, bottom - top)))


def _draw_ditto_mark(draw: ImageDraw.ImageDraw, x: float, baseline: float, height_px: int,
                     width: int, rng: np.random.Generator) -> float:
    """Two short slanted strokes, as a clerk writes 〃; returns the advance width."""
    top = baseline - 0.75 * height_px
    length = 0.28 * height_px
    gap = 0.22 * height_px
    for k in range(2):
        x0 = x + k * gap + rng.normal(0, 0.02 * height_px)
        draw.line([(x0 + 0.12 * height_px, top), (x0, top + length)], fill=255, width=width)
    return gap + 0.3 * height_px


def _draw_words(text: str, font_path: Path, height_px: int, rng: np.random.Generator
                ) -> tuple[Image.Image, float]:
    """Coverage image (255 = ink) of `text` with per-word jitter, and its baseline y."""
    size = _size_for_height(font_path, height_px)
    words = text.split(" ")
    width = int(sum(_font(font_path, size).getlength(word) for word in words) * 1.25
                + height_px * (len(words) + 2))
    baseline = 1.2 * height_px
    canvas = Image.new("L", (max(width, 8), int(2.0 * height_px)), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = 1 if height_px >= 40 and rng.random() < 0.3 else 0
    x = 0.3 * height_px
    space = _font(font_path, size).getlength(" ") or 0.3 * size
    for word in words:
        if word == DITTO_MARK:
            x += _draw_ditto_mark(draw, x, baseline, height_px, max(1, round(height_px / 14)), rng)
        elif word:
            font = _font(font_path, max(6, round(size * rng.uniform(0.93, 1.07))))
            dy = rng.normal(0, 0.035 * height_px)
            draw.text((x, baseline + dy), word, font=font, fill=255, anchor="ls",
                      stroke_width=stroke, stroke_fill=255)
            x += font.getlength(word)
        x += space * rng.uniform(0.75, 1.35)
    return canvas, baseline


def _slant(coverage: np.ndarray, baseline: float, shear: float) -> np.ndarray:
    """Shear horizontally about the baseline (positive shear leans letters to the right)."""
    import cv2

    height, width = coverage.shape
    pad = int(abs(shear) * height) + 2
    matrix = np.float32([[1, -shear, pad + shear * baseline], [0, 1, 0]])
    return cv2.warpAffine(coverage, matrix, (width + 2 * pad, height), flags=cv2.INTER_LINEAR,
                          borderValue=0)


def _vary_stroke(coverage: np.ndarray, height_px: int, stroke: int) -> np.ndarray:
    """Thicken (+1: wide nib, pressure) or thin (-1: light pen) the strokes a little."""
    import cv2

    if stroke > 0 and height_px >= 24:
        return cv2.dilate(coverage, np.ones((2, 2), np.uint8))
    if stroke < 0 and height_px >= 36:
        thinned = cv2.erode(coverage, np.ones((2, 2), np.uint8))
        # a font already drawn with hairlines would break up: keep it as it is
        if (thinned > 128).sum() >= 0.6 * (coverage > 128).sum():
            return thinned
    return coverage


def _crop_to_ink(coverage: np.ndarray, pad: int) -> np.ndarray:
    rows = np.flatnonzero(coverage.max(axis=1) > 24)
    cols = np.flatnonzero(coverage.max(axis=0) > 24)
    if rows.size == 0:
        return np.zeros((1, 1), np.uint8)
    coverage = coverage[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.pad(coverage, pad)


def render_text(text: str, font: Path, height_px: int, rng: np.random.Generator, *,
                slant: float | None = None, ink: int | None = None, stroke: int | None = None,
                pad: int = 2) -> np.ndarray:
    """Render one line of handwriting: a grey uint8 image, dark ink on white (255).

    `height_px` is the font's ascender-to-descender height; the result is cropped to the ink
    with `pad` white pixels around it, so its height is about `height_px` (less for text
    without ascenders or descenders). Per word, the size varies ±7 % and the baseline moves a
    little; the whole line is slanted by `slant` (horizontal shear, default random in
    [-0.12, 0.22]) and strokes are thickened (`stroke` = 1), thinned (-1) or kept (0; default
    random: 25 % / 15 % / 60 %). `ink` is the grey level of full ink (default random in
    [15, 70]). Pass `slant` and `stroke` to keep one writer's hand across calls. Empty text gives a 1×1 white image padded by `pad`.
    Deterministic for a given `rng` state. A lone "〃" word is drawn as two strokes.
    """
    coverage_image, baseline = _draw_words(text, Path(font), height_px, rng)
    shear = rng.uniform(-0.12, 0.22) if slant is None else slant
    coverage = _slant(np.asarray(coverage_image), baseline, shear)
    if stroke is None:
        stroke = int(rng.choice([1, -1, 0], p=[0.25, 0.15, 0.6]))
    coverage = _vary_stroke(coverage, height_px, stroke)
    coverage = _crop_to_ink(coverage, pad)
    level = int(rng.integers(15, 71)) if ink is None else ink
    return (255 - coverage.astype(np.float32) * (255 - level) / 255).round().astype(np.uint8)
