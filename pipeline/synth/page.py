"""Render one synthetic register page (grey image) and its exact ground truth.

The page is drawn upright first: paper, a printed title, the ruled table with the template's
printed headers, and handwriting in each cell. Rules may be faint, broken, or (for data rows)
missing; some text crosses a rule. The whole page is then turned by `skew_deg` about its
centre (counter-clockwise for positive angles, OpenCV's convention) and scanner blur and noise
are added. Every polygon of the ground truth goes through the same affine transform, so it
matches the final pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.errors import UsageError
from pipeline.pagexml import (ColumnGT, DataCellGT, GridGT, HeaderCellGT, PageGroundTruth, Point,
                              RowGT)
from pipeline.synth.fonts import handwriting_fonts, print_fonts, render_text
from pipeline.synth.households import Entry, Person, Setting, make_people, make_setting, write_rows
from pipeline.stages.columns import extra_key
from pipeline.stages.templates import ColumnSpec, Template, extra_column

# Relative column widths by field type; a register gives names and addresses the most room.
WIDTH_BY_TYPE = {"name": 3.3, "relation": 1.2, "sex": 0.55, "age": 0.6, "date": 1.6, "place": 1.8,
                 "marital_status": 1.0, "occupation": 1.6, "literacy": 1.0, "address": 2.6,
                 "number": 0.8, "text": 1.2}
CENTRED_TYPES = {"sex", "age", "number"}
TITLES = {"ca": ("PADRÓ MUNICIPAL D'HABITANTS", "Ajuntament de {town}", "Full de família núm. {n}"),
          "es": ("PADRÓN MUNICIPAL DE HABITANTES", "Ayuntamiento de {town}", "Hoja de familia núm. {n}")}


@dataclass
class Style:
    """Random look of one page; every choice is recorded in the ground truth's `render`."""

    width: int
    dpi: float
    margins: tuple[int, int, int, int]  # left, top, right, bottom (top includes the title)
    header_height: int
    row_height: int
    n_rows: int
    n_people: int
    col_widths: list[int]
    hand_font: Path
    print_font: Path
    paper: float
    ink: int
    rule_grey: int
    rule_width: int
    faint_rules: bool
    broken_rules: bool
    missing_row_rules: bool
    cross_rate: float
    header_variant_random: bool
    blur_sigma: float
    noise_sigma: float
    text_scale: float
    slant: float  # the writer's slant (horizontal shear)
    stroke: int  # the writer's pen: +1 thick, 0 normal, -1 thin
    stains: int = 0  # soft blotches on the paper (damp, foxing)
    edge_shadow: float = 0.0  # darkening at one scanner edge, in grey levels (0: none)
    shadow_side: int = 0  # 0 left, 1 right, 2 top, 3 bottom
    second_font: Path | None = None  # another clerk took over the page ...
    second_from_row: int = 0  # ... at the first household starting at or after this row
    second_slant: float = 0.0
    index_row: bool = False  # a printed row of column numbers, (1) (2) (3) ..., ruled off below the headers
    no_header_rule: bool = False  # hand-ruled: nothing ruled between the headers and the first row
    # a two-level header: a group title over a few adjacent columns ("partial": ruled off under the group
    # only; "full": the rule under the titles runs across the whole table, a two-row header), or "" for none
    grouped_header: str = ""

    @property
    def height(self) -> int:
        return self.margins[1] + self.header_height + self.n_rows * self.row_height + self.margins[3]


def _col_widths(rng: np.random.Generator, template: Template, table_width: int) -> list[int]:
    weights = np.array([WIDTH_BY_TYPE.get(c.type, 1.0) for c in template.columns]) * rng.uniform(
        0.9, 1.1, len(template.columns))
    widths = np.floor(weights / weights.sum() * table_width).astype(int)
    widths[-1] += table_width - widths.sum()
    return widths.tolist()


def make_style(rng: np.random.Generator, template: Template) -> Style:
    """Draw the page's look: size, margins, grid, fonts, rule and noise styles."""
    # sizes are multiples of 25 px, so that a PDF page (sized in 1/72 in) renders back at
    # 200 dpi to exactly the same pixels
    width = 25 * int(rng.integers(76, 85))
    n_rows = int(rng.integers(20, 31))
    header_height, row_height = int(rng.integers(70, 115)), int(rng.integers(38, 52))
    top, bottom = int(rng.integers(150, 240)), int(rng.integers(50, 140))
    bottom += -(top + header_height + n_rows * row_height + bottom) % 25
    margins = (int(rng.integers(50, 160)), top, int(rng.integers(50, 160)), bottom)
    n_people = n_rows - (int(rng.integers(1, 5)) if rng.random() < 0.3 else 0)
    hands, prints = handwriting_fonts(), print_fonts()
    if not hands or not prints:
        raise UsageError("no usable handwriting or DejaVu fonts installed; run `make system-packages` "
                         "(fonts-dancingscript fonts-kristi fonts-kaushanscript fonts-dkg-handwriting "
                         "fonts-breip fonts-dejavu-core)")
    faint = rng.random() < 0.25
    return Style(
        width=width, dpi=float(round(width / 11.69)), margins=margins,
        header_height=header_height, row_height=row_height,
        n_rows=n_rows, n_people=n_people,
        col_widths=_col_widths(rng, template, width - margins[0] - margins[2]),
        hand_font=hands[int(rng.integers(len(hands)))],
        print_font=prints[int(rng.integers(min(4, len(prints))))],
        paper=float(rng.uniform(222, 250)), ink=int(rng.integers(15, 80)),
        rule_grey=int(rng.integers(150, 195)) if faint else int(rng.integers(20, 110)),
        rule_width=int(rng.choice([1, 2, 2, 3])), faint_rules=faint,
        broken_rules=rng.random() < 0.25, missing_row_rules=rng.random() < 0.15,
        cross_rate=float(rng.uniform(0.0, 0.06)) if rng.random() < 0.5 else 0.0,
        header_variant_random=rng.random() < 0.3,
        blur_sigma=float(rng.uniform(0.0, 1.1)), noise_sigma=float(rng.uniform(1.0, 4.5)),
        text_scale=float(rng.uniform(0.62, 0.8)), slant=float(rng.uniform(-0.1, 0.2)),
        stroke=int(rng.choice([1, 0, -1], p=[0.25, 0.6, 0.15])))


def _paper(rng: np.random.Generator, style: Style) -> np.ndarray:
    """Paper tone with low-frequency texture and an uneven illumination gradient."""
    height, width = style.height, style.width
    blotches = cv2.resize(rng.normal(0, 1, (height // 64 + 2, width // 64 + 2)).astype(np.float32),
                          (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 1, (height, width)).astype(np.float32)
    gradient = np.linspace(0, rng.uniform(-10, 10), width, dtype=np.float32)[None, :]
    return style.paper + 4.0 * blotches + 1.0 * grain + gradient


def _grid(style: Style) -> tuple[list[int], list[int]]:
    left, top = style.margins[0], style.margins[1]
    rows = [top, top + style.header_height]
    rows += [rows[-1] + (k + 1) * style.row_height for k in range(style.n_rows)]
    cols = [left]
    for width in style.col_widths:
        cols.append(cols[-1] + width)
    return rows, cols


def _rule_segments(rng: np.random.Generator, start: int, end: int, broken: bool) -> list[tuple[int, int]]:
    """Pieces of one rule: whole, or with a few gaps (worn print, bad scan)."""
    if not broken or rng.random() < 0.4:
        return [(start, end)]
    segments, position = [], start
    while position < end:
        length = int(rng.integers(60, 400))
        segments.append((position, min(end, position + length)))
        position += length + int(rng.integers(4, 30))
    return segments


def _index_rule(style: Style, rows: list[int]) -> int | None:
    """The rule between the headers and the index row at the foot of the header band, if the form has one.
    The index row is narrow print: at most half a row's height."""
    if not style.index_row:
        return None
    return rows[1] - min(int(0.3 * style.header_height), style.row_height // 2)


GROUPED_HEADER_KINDS = ("", "partial", "full")
# (over literacy columns, over others): titles that name no column, so a column is still told by its own header
GROUP_TITLES = {"ca": ("Instrucció", "Dades personals"), "es": ("Instrucción", "Datos personales")}


def _header_group(style: Style, n_cols: int, seed: int) -> tuple[int, int] | None:
    """[first, last) columns under one group title, drawn from the seed; None without a grouped header."""
    if not style.grouped_header or n_cols < 4:
        return None
    rng = np.random.default_rng([seed, 11])
    size = int(rng.integers(2, 4))
    first = int(rng.integers(1, n_cols - size + 1))
    return first, first + size


def _group_rule(style: Style, rows: list[int]) -> int:
    """The rule under the group titles: the top 40% of the header band is theirs."""
    return rows[0] + int(0.4 * (rows[1] - rows[0]))


def _draw_rules(rng: np.random.Generator, canvas: np.ndarray, style: Style, rows: list[int],
                cols: list[int], group: tuple[int, int] | None = None) -> None:
    ink = np.zeros_like(canvas)
    darkness = 255 - style.rule_grey
    outer = {rows[0], rows[1], rows[-1]}
    index_rule = _index_rule(style, rows)
    if group:
        full = style.grouped_header == "full"
        x0, x1 = (cols[0], cols[-1]) if full else (cols[group[0]], cols[group[1]])
        cv2.line(ink, (x0, _group_rule(style, rows)), (x1, _group_rule(style, rows)), darkness, style.rule_width)
    for index, y in enumerate(rows + ([index_rule] if index_rule else [])):
        if style.missing_row_rules and y not in outer and y != index_rule:
            continue
        if style.no_header_rule and y == rows[1]:
            continue
        thickness = style.rule_width + (1 if y in outer and index != 1 else 0)
        jitter = rng.normal(0, 0.6) if rng.random() < 0.3 else 0.0  # printing a bit uneven
        for x0, x1 in _rule_segments(rng, cols[0], cols[-1], style.broken_rules):
            cv2.line(ink, (x0, int(round(y + jitter))), (x1, int(round(y + jitter))), darkness, thickness)
    for index, x in enumerate(cols):
        thickness = style.rule_width + (1 if index in (0, len(cols) - 1) else 0)
        under_title = group and group[0] < index < group[1]  # a sub-column rule starts under its group's title
        for y0, y1 in _rule_segments(rng, _group_rule(style, rows) if under_title else rows[0], rows[-1],
                                     style.broken_rules):
            cv2.line(ink, (x, y0), (x, y1), darkness, thickness)
    canvas -= ink * rng.uniform(0.85, 1.0)


def _header_variant(rng: np.random.Generator, column: ColumnSpec, randomise: bool) -> str:
    return column.headers[int(rng.integers(len(column.headers)))] if randomise else column.headers[0]


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _fit_header(text: str, font_path: Path, width: int, height: int) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """Largest print size (≤ 26 px) at which the wrapped header fits its cell."""
    for size in range(26, 9, -1):
        font = ImageFont.truetype(str(font_path), size)
        lines = _wrap(text, font, width)
        fits = all(font.getlength(line) <= width for line in lines)
        if fits and len(lines) * size * 1.2 <= height:
            return font, lines
    return font, lines


def _draw_print(canvas: np.ndarray, style: Style, texts: list[tuple[tuple[int, int], str, int, str]]) -> None:
    """Draw printed text items ((x, y), text, size, anchor) onto the canvas."""
    layer = Image.new("L", (style.width, style.height), 0)
    draw = ImageDraw.Draw(layer)
    for (x, y), text, size, anchor in texts:
        draw.text((x, y), text, font=ImageFont.truetype(str(style.print_font), size), fill=255, anchor=anchor)
    canvas -= np.asarray(layer, dtype=np.float32) / 255 * (style.paper - 35)


def _draw_headers(rng: np.random.Generator, canvas: np.ndarray, style: Style, template: Template,
                  rows: list[int], cols: list[int], group: tuple[int, int] | None = None) -> list[str]:
    headers = [_header_variant(rng, column, style.header_variant_random) for column in template.columns]
    layer = Image.new("L", (style.width, style.height), 0)
    draw = ImageDraw.Draw(layer)
    index_rule = _index_rule(style, rows)
    headers_end = index_rule or rows[1]
    if group:
        _draw_group_title(draw, style, template, rows, cols, group)
    for index, text in enumerate(headers):
        # under the group's title, or under the line of titles when it runs across the table
        below_titles = group and (style.grouped_header == "full" or group[0] <= index < group[1])
        headers_top = _group_rule(style, rows) if below_titles else rows[0]
        cell_width = cols[index + 1] - cols[index] - 10
        font, lines = _fit_header(text, style.print_font, cell_width, headers_end - headers_top - 10)
        line_height = font.size * 1.2
        y = (headers_top + headers_end) / 2 - line_height * (len(lines) - 1) / 2
        for line in lines:
            draw.text(((cols[index] + cols[index + 1]) / 2, y), line, font=font, fill=255, anchor="mm")
            y += line_height
        if index_rule:
            number_font = ImageFont.truetype(str(style.print_font), max(10, int(0.6 * (rows[1] - index_rule))))
            draw.text(((cols[index] + cols[index + 1]) / 2, (index_rule + rows[1]) / 2), f"({index + 1})",
                      font=number_font, fill=255, anchor="mm")
    canvas -= np.asarray(layer, dtype=np.float32) / 255 * (style.paper - 30)
    return headers


def _draw_group_title(draw: ImageDraw.ImageDraw, style: Style, template: Template, rows: list[int],
                      cols: list[int], group: tuple[int, int]) -> None:
    over_literacy, over_others = GROUP_TITLES.get(template.language, GROUP_TITLES["es"])
    literacy = any(column.type == "literacy" for column in template.columns[group[0]:group[1]])
    title = (over_literacy if literacy else over_others).upper()
    band = _group_rule(style, rows) - rows[0]
    font, _ = _fit_header(title, style.print_font, cols[group[1]] - cols[group[0]] - 10, band - 4)
    draw.text(((cols[group[0]] + cols[group[1]]) / 2, rows[0] + band / 2), title, font=font, fill=255, anchor="mm")


def _draw_title(rng: np.random.Generator, canvas: np.ndarray, style: Style, language: str,
                municipality: str, year: int) -> None:
    title, council, sheet = TITLES.get(language, TITLES["es"])
    left, top = style.margins[0], style.margins[1]
    y = max(40, top - 110)
    _draw_print(canvas, style, [
        ((style.width // 2, y), f"{title} — {year}", 34, "mm"),
        ((left, y + 55), council.format(town=municipality), 24, "ls"),
        ((style.width - style.margins[2], y + 55), sheet.format(n=int(rng.integers(1, 2400))), 24, "rs"),
    ])


@dataclass
class Placed:
    """Where a cell's handwriting landed, in unskewed page pixels."""

    x0: int
    y0: int
    x1: int
    y1: int


def _fit_ink(ink: np.ndarray, max_width: int, overflow: bool) -> np.ndarray:
    """Shrink text too wide for its cell (clerks wrote smaller), unless it is let overflow."""
    limit = max_width * (1.15 if overflow else 1.0)
    if ink.shape[1] <= limit:
        return ink
    scale = limit / ink.shape[1]
    # shrink mostly horizontally (cramped writing), a little vertically
    new_height = max(4, int(ink.shape[0] * max(scale, 0.75)))
    return cv2.resize(ink, (int(limit), new_height), interpolation=cv2.INTER_AREA)


def _place_ink(rng: np.random.Generator, canvas: np.ndarray, ink: np.ndarray, box: tuple[int, int, int, int],
               centred: bool, cross: bool) -> Placed:
    x0, y0, x1, y1 = box
    height, width = ink.shape
    pad = int(rng.integers(4, 14))
    x = (x0 + x1 - width) // 2 + int(rng.integers(-4, 5)) if centred else x0 + pad
    y = (y0 + y1 - height) // 2 + int(rng.normal(0, 0.06 * (y1 - y0)))
    if cross:  # a sloppy line whose descenders run over the rule below
        y += int((y1 - y0) * rng.uniform(0.25, 0.4))
    x = int(np.clip(x, 0, canvas.shape[1] - width))
    y = int(np.clip(y, 0, canvas.shape[0] - height))
    region = canvas[y:y + height, x:x + width]
    # ink darkens paper multiplicatively, so a crossed rule stays visible under the ink
    region *= ink.astype(np.float32) / 255
    return Placed(x, y, x + width, y + height)


def _draw_cells(rng: np.random.Generator, canvas: np.ndarray, style: Style, template: Template,
                rows: list[int], cols: list[int], entries: list[dict[str, Entry]],
                households: list[str | None]) -> dict[tuple[int, int], Placed]:
    placed: dict[tuple[int, int], Placed] = {}
    text_height = max(12, int(style.row_height * style.text_scale))
    font, slant = style.hand_font, style.slant
    for r, row in enumerate(entries):
        top, bottom = rows[r + 1], rows[r + 2]
        if r == 0 or households[r] != households[r - 1]:  # a household was often written in one sitting
            household_ink = style.ink + rng.normal(0, 12)
            if style.second_font and r >= style.second_from_row:
                font, slant = style.second_font, style.second_slant
        for c, column in enumerate(template.columns):
            entry = row[column.key]
            if not entry.text:
                continue
            ink_level = int(np.clip(household_ink + rng.normal(0, 6), 5, 110))
            ink = render_text(entry.text, font, int(text_height * rng.uniform(0.92, 1.08)), rng,
                              ink=ink_level, slant=slant + rng.normal(0, 0.03), stroke=style.stroke)
            cross = rng.random() < style.cross_rate
            ink = _fit_ink(ink, cols[c + 1] - cols[c] - 8, overflow=cross)
            placed[(r, c)] = _place_ink(rng, canvas, ink, (cols[c], top, cols[c + 1], bottom),
                                        column.type in CENTRED_TYPES, cross)
    return placed


def _transform(matrix: np.ndarray, points: list[tuple[float, float]]) -> list[Point]:
    array = np.hstack([np.asarray(points, dtype=np.float64), np.ones((len(points), 1))])
    return [(int(round(x)), int(round(y))) for x, y in array @ matrix.T]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _with_defects(rng: np.random.Generator, style: Style) -> Style:
    """Paper stains (1 page in 6) and a scanner-lid shadow along one edge (1 in 7)."""
    stains = int(rng.integers(1, 4)) if rng.random() < 0.17 else 0
    shadow = float(rng.uniform(25, 70)) if rng.random() < 0.14 else 0.0
    return replace(style, stains=stains, edge_shadow=shadow, shadow_side=int(rng.integers(0, 4)))


def _with_second_hand(rng: np.random.Generator, style: Style) -> Style:
    """One page in eight is finished by another clerk, with another hand and slant."""
    others = [font for font in handwriting_fonts() if font != style.hand_font]
    if rng.random() >= 0.125 or not others:
        return style
    return replace(style, second_font=others[int(rng.integers(len(others)))],
                   second_from_row=int(rng.integers(style.n_rows // 3, max(style.n_rows // 3 + 1, style.n_people))),
                   second_slant=float(rng.uniform(-0.1, 0.2)))


def _stain(rng: np.random.Generator, canvas: np.ndarray, style: Style) -> None:
    """Soft irregular blotches a few tens of grey levels darker than the paper."""
    height, width = canvas.shape
    for _ in range(style.stains):
        rx = float(rng.uniform(40, 160))
        ry = rx * float(rng.uniform(0.6, 1.4))
        cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        x0, x1 = int(max(0, cx - 1.5 * rx)), int(min(width, cx + 1.5 * rx))
        y0, y1 = int(max(0, cy - 1.5 * ry)), int(min(height, cy + 1.5 * ry))
        ys, xs = np.ogrid[y0:y1, x0:x1]
        distance = np.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
        wobble = cv2.resize(rng.normal(0, 0.25, (8, 8)).astype(np.float32), (x1 - x0, y1 - y0))
        depth = float(rng.uniform(8, 28))
        canvas[y0:y1, x0:x1] -= depth * np.clip(1.0 - distance + wobble, 0, 1) ** 0.7


def _edge_shadow(image: np.ndarray, style: Style) -> None:
    """The dark band a scanner lid leaves along one edge of the glass."""
    if style.edge_shadow <= 0:
        return
    vertical = style.shadow_side < 2
    size = image.shape[1] if vertical else image.shape[0]
    ramp = np.exp(-np.arange(size, dtype=np.float32) / 25.0) * style.edge_shadow
    if style.shadow_side in (1, 3):
        ramp = ramp[::-1]
    image -= ramp[None, :] if vertical else ramp[:, None]


def _scan(rng: np.random.Generator, canvas: np.ndarray, style: Style, skew_deg: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Turn the page by `skew_deg`, then blur and add sensor noise like a flatbed scan."""
    matrix = cv2.getRotationMatrix2D((style.width / 2, style.height / 2), skew_deg, 1.0)
    turned = cv2.warpAffine(canvas, matrix, (style.width, style.height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=float(style.paper))
    if style.blur_sigma > 0.3:
        turned = cv2.GaussianBlur(turned, (0, 0), style.blur_sigma)
    turned += rng.normal(0, style.noise_sigma, turned.shape).astype(np.float32)
    specks = rng.random(turned.shape) < 0.0003  # dust
    turned[specks] = rng.uniform(40, 140, int(specks.sum()))
    _edge_shadow(turned, style)
    return np.clip(turned, 0, 255).round().astype(np.uint8), matrix


def _row_households(people: list[Person], n_rows: int) -> list[str | None]:
    return [people[r].household_id if r < len(people) else None for r in range(n_rows)]


# Forms printed otherwise than the template's own form (see `page_form`), drawn only when asked.
FORM_OVERRIDES = {"order_number": bool, "split_literacy": bool, "extra_header": str, "form_variants": bool}
SPLIT_LITERACY = ("can_read", "can_write")
EXTRA_HEADERS = {"ca": ("Observacions", "Cèdula personal", "Servei militar", "Religió"),
                 "es": ("Observaciones", "Cédula personal", "Servicio militar", "Religión")}
# Style choices a caller may force (a test of "missing rules", a held-out font...), skew_deg and the form.
OVERRIDABLE = {"faint_rules": bool, "broken_rules": bool, "missing_row_rules": bool, "index_row": bool,
               "no_header_rule": bool, "grouped_header": str,
               "cross_rate": float,
               "noise_sigma": float, "blur_sigma": float, "hand_font": str, "skew_deg": float,
               **FORM_OVERRIDES}


def page_form(template: Template, seed: int, overrides: dict[str, Any]) -> Template:
    """The columns printed on the page: the template's own, its optional ones left out, unless the
    overrides ask for the order number first (`order_number`, the template's `num`), literacy in
    two columns (`split_literacy`: `can_read` and `can_write` in place of the one literacy column),
    or a column the template does not know, under the header `extra_header`, at a drawn place
    (after the first column). `form_variants` draws each of the three, on one page in two."""
    rng = np.random.default_rng([seed, 10])
    varied = bool(overrides.get("form_variants", False))
    language = template.language if template.language in EXTRA_HEADERS else "es"
    drawn = {"order_number": varied and rng.random() < 0.5, "split_literacy": varied and rng.random() < 0.5,
             "extra_header": EXTRA_HEADERS[language][int(rng.integers(4))] if varied and rng.random() < 0.5 else ""}
    try:
        form = {key: FORM_OVERRIDES[key](overrides.get(key, value)) for key, value in drawn.items()}
    except (TypeError, ValueError) as error:
        raise UsageError(f"bad form override value: {error}") from error
    split = form["split_literacy"] and all(key in {c.key for c in template.columns} for key in SPLIT_LITERACY)
    columns = [column for column in template.columns
               if (column.key == "num" and form["order_number"]) or (column.key in SPLIT_LITERACY and split)
               or (not column.optional and not (split and column.type == "literacy"))]
    if form["extra_header"]:
        place = int(rng.integers(1, len(columns) + 1))
        key = extra_key(form["extra_header"], place, {column.key for column in columns})
        columns.insert(place, extra_column(key, form["extra_header"]))
    return template.model_copy(update={"columns": columns})


def _font_named(name: str) -> Path:
    fonts = {font.name: font for font in handwriting_fonts()} | {font.stem: font for font in handwriting_fonts()}
    if name in fonts:
        return fonts[name]
    if Path(name).is_file():
        return Path(name)
    raise UsageError(f"unknown handwriting font {name!r}; installed: {', '.join(sorted(fonts))}")


def apply_overrides(style: Style, overrides: dict[str, Any]) -> Style:
    """The page style with the caller's forced choices (see OVERRIDABLE); UsageError if unknown."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise UsageError(f"unknown style override(s) {sorted(unknown)}; known: {sorted(OVERRIDABLE)}")
    try:
        changes = {key: OVERRIDABLE[key](value) for key, value in overrides.items()
                   if key != "skew_deg" and key not in FORM_OVERRIDES}
    except (TypeError, ValueError) as error:
        raise UsageError(f"bad style override value: {error}") from error
    if "hand_font" in changes:
        changes["hand_font"] = _font_named(changes["hand_font"])
    if changes.get("grouped_header", "") not in GROUPED_HEADER_KINDS:
        raise UsageError(f"grouped_header must be one of {', '.join(map(repr, GROUPED_HEADER_KINDS))}, "
                         f"got {changes['grouped_header']!r}")
    if "faint_rules" in changes and changes["faint_rules"] != style.faint_rules:
        changes["rule_grey"] = 175 if changes["faint_rules"] else 60
    styled = replace(style, **changes)
    return _with_room_for_group_titles(styled) if styled.grouped_header and not style.grouped_header else styled


def _with_room_for_group_titles(style: Style) -> Style:
    """A two-level header is printed taller: the group titles take the top 40% of the header band."""
    header_height = int(1.4 * style.header_height)
    left, top, right, bottom = style.margins
    bottom += -(top + header_height + style.n_rows * style.row_height + bottom) % 25  # see make_style
    return replace(style, header_height=header_height, margins=(left, top, right, bottom))


TABLE_CLEARANCE = 20  # px between the turned table and the image border


def _fit_table(style: Style, skew_deg: float) -> Style:
    """Widen the margins where the turned table would leave the image (large skews)."""
    for _ in range(4):  # growing a margin moves the rotation centre: settle in a few steps
        rows, cols = _grid(style)
        matrix = cv2.getRotationMatrix2D((style.width / 2, style.height / 2), skew_deg, 1.0)
        corners = np.asarray(_transform(matrix, _rect(cols[0], rows[0], cols[-1], rows[-1])))
        need = [TABLE_CLEARANCE - corners[:, 0].min(), TABLE_CLEARANCE - corners[:, 1].min(),
                corners[:, 0].max() - style.width + TABLE_CLEARANCE,
                corners[:, 1].max() - style.height + TABLE_CLEARANCE]
        if max(need) <= 0:
            return style
        left, top, right, bottom = (m + max(0, int(np.ceil(n))) for m, n in zip(style.margins, need))
        width = left + sum(style.col_widths) + right
        right += -width % 25  # keep sizes multiples of 25 px (see make_style)
        bottom += -(top + style.header_height + style.n_rows * style.row_height + bottom) % 25
        style = replace(style, width=left + sum(style.col_widths) + right, margins=(left, top, right, bottom))
    return style


def _skew(rng: np.random.Generator, skew_max_deg: float, overrides: dict[str, Any]) -> float:
    drawn = float(rng.uniform(-skew_max_deg, skew_max_deg))
    try:
        return float(overrides.get("skew_deg", drawn))
    except (TypeError, ValueError) as error:
        raise UsageError(f"bad skew_deg override: {error}") from error


def render_page(template: Template, seed: int, skew_max_deg: float = 3.0, image_name: str = "",
                page_index: int = 0, overrides: dict[str, Any] | None = None) -> tuple[np.ndarray, PageGroundTruth]:
    """One page: grey uint8 image and its ground truth. Deterministic for (template, seed,
    overrides). `overrides` forces style choices, e.g. {"missing_row_rules": True,
    "hand_font": "Kristi.ttf", "skew_deg": -4.5}, and the form's columns (`page_form`: {"order_number":
    True, "extra_header": "Observacions"}); everything else stays as the seed draws it."""
    overrides = overrides or {}
    rng = np.random.default_rng(seed)
    template = page_form(template, seed, overrides)
    style = apply_overrides(make_style(rng, template), overrides)
    style = _with_defects(np.random.default_rng([seed, 7]), style)
    style = _with_second_hand(np.random.default_rng([seed, 9]), style)
    # drawn before the content, so that the page's look and skew do not depend on its households
    skew_deg = _skew(rng, skew_max_deg, overrides)
    style = _fit_table(style, skew_deg)
    setting = make_setting(rng, template)
    people = make_people(rng, setting, style.n_people)
    entries = write_rows(rng, template, setting, people)
    entries += [{c.key: Entry("", None) for c in template.columns}] * (style.n_rows - len(entries))
    canvas = _paper(rng, style)
    _stain(np.random.default_rng([seed, 8]), canvas, style)
    rows, cols = _grid(style)
    group = _header_group(style, len(cols) - 1, seed)
    _draw_title(rng, canvas, style, setting.language, setting.municipality, setting.reference_date.year)
    _draw_rules(rng, canvas, style, rows, cols, group)
    headers = _draw_headers(rng, canvas, style, template, rows, cols, group)
    placed = _draw_cells(rng, canvas, style, template, rows, cols, entries, _row_households(people, style.n_rows))
    image, matrix = _scan(rng, canvas, style, skew_deg)
    truth = _ground_truth(template, style, setting, people, entries, headers, placed, rows, cols, matrix,
                          skew_deg, seed, image_name, page_index)
    return image, truth


def _ground_truth(template: Template, style: Style, setting: Setting, people: list[Person],
                  entries: list[dict[str, Entry]], headers: list[str], placed: dict[tuple[int, int], Placed],
                  rows: list[int], cols: list[int], matrix: np.ndarray, skew_deg: float, seed: int,
                  image_name: str, page_index: int) -> PageGroundTruth:
    households = _row_households(people, style.n_rows)
    cells = []
    for r, row in enumerate(entries):
        for c, column in enumerate(template.columns):
            entry = row[column.key]
            ink = placed.get((r, c))
            cells.append(DataCellGT(
                row=r, col=c, field=column.key, text=entry.text, value=entry.value, ditto=entry.ditto,
                polygon=_transform(matrix, _rect(cols[c], rows[r + 1], cols[c + 1], rows[r + 2])),
                line_polygon=_transform(matrix, _rect(ink.x0, ink.y0, ink.x1, ink.y1)) if ink else None,
                household_id=households[r]))
    return PageGroundTruth(
        image=image_name, page_index=page_index, width=style.width, height=style.height, dpi=style.dpi,
        template=template.name, language=setting.language, register_year=setting.reference_date.year,
        reference_date=setting.reference_date, municipality=setting.municipality, seed=seed,
        skew_deg=skew_deg, skew_matrix=matrix.tolist(), header_rows=1, n_rows=style.n_rows,
        n_cols=len(template.columns),
        grid=GridGT(row_bounds=rows, col_bounds=cols,
                    row_lines=[_transform(matrix, [(cols[0], y), (cols[-1], y)]) for y in rows],
                    col_lines=[_transform(matrix, [(x, rows[0]), (x, rows[-1])]) for x in cols]),
        table_polygon=_transform(matrix, _rect(cols[0], rows[0], cols[-1], rows[-1])),
        columns=[ColumnGT(col=c, field=column.key, header=headers[c]) for c, column in enumerate(template.columns)],
        header_cells=[HeaderCellGT(row=0, col=c, text=headers[c],
                                   polygon=_transform(matrix, _rect(cols[c], rows[0], cols[c + 1], rows[1])))
                      for c in range(len(template.columns))],
        cells=cells,
        rows=[RowGT(row=r, household_id=households[r],
                    polygon=_transform(matrix, _rect(cols[0], rows[r + 1], cols[-1], rows[r + 2])))
              for r in range(style.n_rows)],
        render=_render_record(style, setting))


def _render_record(style: Style, setting: Setting) -> dict[str, Any]:
    return {"hand_font": style.hand_font.name, "print_font": style.print_font.name,
            "row_height": style.row_height, "header_height": style.header_height,
            "faint_rules": style.faint_rules, "broken_rules": style.broken_rules,
            "missing_row_rules": style.missing_row_rules, "index_row": style.index_row,
            "no_header_rule": style.no_header_rule, "grouped_header": style.grouped_header,
            "cross_rate": round(style.cross_rate, 4),
            "slant": round(style.slant, 3), "stroke": style.stroke, "rule_grey": style.rule_grey, "rule_width": style.rule_width,
            "blur_sigma": round(style.blur_sigma, 3), "noise_sigma": round(style.noise_sigma, 3),
            "ditto_marks": list(setting.ditto_marks), "filled_rows": style.n_people,
            "second_hand_font": style.second_font.name if style.second_font else None,
            "second_hand_from_row": style.second_from_row if style.second_font else None,
            "stains": style.stains, "edge_shadow": round(style.edge_shadow, 1),
            "shadow_side": ["left", "right", "top", "bottom"][style.shadow_side] if style.edge_shadow else None}
