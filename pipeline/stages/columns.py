"""Column mapping: which template field each grid column holds.

The printed header of every column is read with tesseract (all header cells in one call;
in the template's language first, then in Catalan+Spanish+French for those matching nothing),
compared with each template column's header variants (Catalan, Spanish, French spellings)
by fuzzy matching, and columns are assigned one-to-one by the Hungarian method on those
scores. A column whose header cannot be read well enough falls back to its position,
aligned on the columns that were matched by header.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from pipeline.stages.layout import header_box
from pipeline.models import ColumnMapping, Grid
from pipeline.stages.templates import Template
from pipeline.tesseract import DEFAULT_LANG

MIN_HEADER_SCORE = 0.6  # below this a header match is not trusted; position decides
HEADER_INSET = 5  # px trimmed inside each header cell so the rules are not read as letters
TEMPLATE_LANGUAGES = {"ca": "cat", "es": "spa", "fr": "fra"}  # tesseract model per template language


def map_columns(image: np.ndarray, grid: Grid, template: Template,
                lang: str = DEFAULT_LANG) -> ColumnMapping:
    """Map grid columns to template fields by their printed headers, else by position."""
    headers, scores = _read_and_score(image, grid, template, lang)
    assigned = _assign(scores)
    offset = _position_offset(assigned)
    fields: dict[int, str | None] = {}
    methods: dict[int, str] = {}
    chosen: dict[int, float] = {}
    taken = set(assigned.values())
    for col in range(len(headers)):
        if col in assigned:
            index, method = assigned[col], "header"
        else:
            index, method = col + offset, "position"
            if not 0 <= index < len(template.columns) or index in taken:
                fields[col], methods[col], chosen[col] = None, method, 0.0
                continue
            taken.add(index)
        fields[col] = template.columns[index].key
        methods[col], chosen[col] = method, round(float(scores[col, index]), 3)
    return ColumnMapping(fields=fields, headers=dict(enumerate(headers)), method=methods, scores=chosen)


def _read_and_score(image: np.ndarray, grid: Grid, template: Template,
                    lang: str) -> tuple[list[str], np.ndarray]:
    """Headers read in the template's own language first (one tesseract model loads and reads
    twice as fast as three); only headers that match nothing are read again with `lang`."""
    first = TEMPLATE_LANGUAGES.get(template.language, lang)
    headers = read_headers(image, grid, first)
    scores = score_matrix(headers, template)
    weak = [col for col in range(len(headers)) if scores[col].max(initial=0.0) < MIN_HEADER_SCORE]
    if weak and first != lang:
        for col, text in zip(weak, read_headers(image, grid, lang, columns=weak)):
            row = score_matrix([text], template)[0]
            if row.max(initial=0.0) > scores[col].max(initial=0.0):
                headers[col], scores[col] = text, row
    return headers, scores


def read_headers(image: np.ndarray, grid: Grid, lang: str = DEFAULT_LANG,
                 columns: list[int] | None = None) -> list[str]:
    """The printed header text of each column (or of `columns`), '' where nothing was read."""
    from pipeline.recognize.tesseract import TesseractEngine

    crops = []
    for col in range(len(grid.col_bounds) - 1) if columns is None else columns:
        box = header_box(grid, col)
        inset_x = min(HEADER_INSET, box.width // 4)
        inset_y = min(HEADER_INSET, box.height // 4)
        crops.append(image[box.y0 + inset_y: box.y1 - inset_y, box.x0 + inset_x: box.x1 - inset_x])
    readings = TesseractEngine(lang=lang).recognize(crops)
    return [" ".join(reading.text.split()) for reading in readings]


def normalise_header(text: str) -> str:
    """Lower case, accents and punctuation dropped, hyphenated line breaks joined."""
    text = unicodedata.normalize("NFKD", text.replace("-\n", "").replace("- ", "")).casefold()
    text = "".join(char for char in text if not unicodedata.combining(char))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def header_score(read: str, variants: list[str]) -> float:
    """Best similarity in [0, 1] between a header as read and a column's header variants."""
    from rapidfuzz import fuzz

    read = normalise_header(read)
    if not read:
        return 0.0
    best = 0.0
    for variant in variants:
        variant = normalise_header(variant)
        best = max(best, fuzz.ratio(read, variant), fuzz.token_sort_ratio(read, variant))
    return best / 100.0


def score_matrix(headers: list[str], template: Template) -> np.ndarray:
    """scores[grid column, template column]."""
    return np.array([[header_score(read, column.headers) for column in template.columns] for read in headers])


def _assign(scores: np.ndarray) -> dict[int, int]:
    """One-to-one grid column -> template column maximising the total score; weak pairs dropped."""
    from scipy.optimize import linear_sum_assignment

    if scores.size == 0:
        return {}
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return {int(row): int(col) for row, col in zip(rows, cols) if scores[row, col] >= MIN_HEADER_SCORE}


def _position_offset(assigned: dict[int, int]) -> int:
    """How template positions are shifted from grid positions (an extra column at the left...)."""
    if not assigned:
        return 0
    return int(round(float(np.median([index - col for col, index in assigned.items()]))))
