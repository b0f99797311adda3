"""Column mapping: which template field each grid column holds.

The printed header of every column is read with tesseract (all header cells in one call;
in the template's language first, then in Catalan+Spanish+French for those matching nothing),
compared with each template column's header variants (Catalan, Spanish, French spellings)
by fuzzy matching (a header matching no column well is tried again without its first
words, the title of a group of columns printed above it), and columns are assigned
one-to-one by the Hungarian method on those scores. A column whose header cannot be read
(no word in it: blank, a blot, a rule's remnant) falls back to its position between the columns
matched by header. A column whose header reads as words matching none of the template's is a column
the template does not know: it is kept as a text field named from its header (`extra_key`), never
dropped nor forced onto another field.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from pipeline.stages.layout import heading_box
from pipeline.models import ColumnMapping, Grid
from pipeline.stages.templates import EXTRA_PREFIX, ColumnSpec, Template
from pipeline.tesseract import DEFAULT_LANG

MIN_HEADER_SCORE = 0.6  # below this a header match is not trusted
GROUP_TAIL_DISCOUNT = 0.95  # a header matched without the group title printed above it ...
GROUP_TAIL_BELOW = 0.8  # ... tried when the whole reading matches no column better than this,
GROUP_TAIL_MATCH = 0.9  # ... and kept only as a near-exact match (not a word of handwriting read with it)
# A header read with at least this many letters is words, not a blot: matching nothing, it names a
# column of its own instead of falling back to its position.
LEGIBLE_LETTERS = 3
EXTRA_KEY_LENGTH = 40  # characters of an extra column's key, prefix included
HEADER_INSET = 5  # px trimmed inside each header cell so the rules are not read as letters
TEMPLATE_LANGUAGES = {"ca": "cat", "es": "spa", "fr": "fra"}  # tesseract model per template language


def map_columns(image: np.ndarray, grid: Grid, template: Template,
                lang: str = DEFAULT_LANG) -> ColumnMapping:
    """Map grid columns to template fields by their printed headers, else by position; a column
    of the template's none keeps its own field (`extra_key`)."""
    headers, scores = _read_and_score(image, grid, template, lang)
    assigned = _assign(scores)
    by_position = _by_position(assigned, len(headers), template.columns)
    fields: dict[int, str | None] = {}
    methods: dict[int, str] = {}
    chosen: dict[int, float] = {}
    keys = {column.key for column in template.columns}
    for col, header in enumerate(headers):
        if col in assigned:
            index, method = assigned[col], "header"
        elif col in by_position and not is_legible(header):
            index, method = by_position[col], "position"
        else:
            fields[col], methods[col], chosen[col] = extra_key(header, col, keys), "extra", 0.0
            keys.add(fields[col])
            continue
        fields[col] = template.columns[index].key
        methods[col], chosen[col] = method, round(float(scores[col, index]), 3)
    return ColumnMapping(fields=fields, headers=dict(enumerate(headers)), method=methods, scores=chosen)


def is_legible(header: str) -> bool:
    """Whether a header as read holds words (a blot or a rule's remnant reads as a letter or two)."""
    return sum(char.isalpha() for char in normalise_header(header)) >= LEGIBLE_LETTERS


def extra_key(header: str, col: int, taken: set[str]) -> str:
    """The field key of a printed column the template does not know: `extra_` and its header as
    read, normalised (lower-case ASCII words joined by `_`, cut at 40 characters), e.g.
    'Observaciones' -> `extra_observaciones`; `extra_col<N>` (N counted from 1) when the header
    holds no letter or digit; `_2`, `_3`... after it when `taken` (the template's keys and those
    given before on the page) holds it already. The same header gives the same key on every page,
    so a run's pages share the column."""
    slug = "_".join(normalise_header(header).split())
    base = (EXTRA_PREFIX + slug if slug else f"{EXTRA_PREFIX}col{col + 1}")[:EXTRA_KEY_LENGTH].rstrip("_")
    key, count = base, 1
    while key in taken:
        count += 1
        key = f"{base}_{count}"
    return key


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
    for col, header in enumerate(headers):
        if scores[col].max(initial=0.0) < GROUP_TAIL_BELOW:
            scores[col] = np.maximum(scores[col], _score_under_a_group_title(header, template))
    return headers, scores


def _score_under_a_group_title(header: str, template: Template) -> np.ndarray:
    """Scores of a header read with a group title above it ("DADES PERSONALS Parentiu", or the part of
    the title over this column): the best of its word tails, a little discounted so that a whole
    reading's match is preferred. Tried only for a header that matches no column well as a whole, so
    a tail such as "naixement" of "Lloc de naixement" never takes another column's field; a tail
    kept only when it matches nearly exactly."""
    words = header.split()
    tails = [" ".join(words[start:]) for start in range(1, len(words))]
    if not tails:
        return np.zeros(len(template.columns))
    best = score_matrix(tails, template).max(axis=0)
    return np.where(best >= GROUP_TAIL_MATCH, GROUP_TAIL_DISCOUNT * best, 0.0)


def read_headers(image: np.ndarray, grid: Grid, lang: str = DEFAULT_LANG,
                 columns: list[int] | None = None) -> list[str]:
    """The printed header text of each column (or of `columns`), '' where nothing was read."""
    from pipeline.recognize.tesseract import TesseractEngine

    crops = []
    for col in range(len(grid.col_bounds) - 1) if columns is None else columns:
        box = heading_box(grid, col)
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


def _by_position(assigned: dict[int, int], n_cols: int, columns: list[ColumnSpec]) -> dict[int, int]:
    """Grid column -> template column by position, for the columns not matched by header: each run of
    them between two header-matched columns (or an edge of the table) takes, in order, the template
    columns between those two, leaving optional ones (printed on some forms only) out where there
    are more template columns than grid columns; a run at the left edge is aligned on its right."""
    anchors = [(-1, -1), *sorted(assigned.items()), (n_cols, len(columns))]
    placed: dict[int, int] = {}
    for (left, low), (right, high) in zip(anchors, anchors[1:]):
        gap, free = list(range(left + 1, right)), list(range(low + 1, high))
        if not gap or not free:
            continue
        required = [index for index in free if not columns[index].optional]
        if len(free) > len(gap) and len(required) >= len(gap):
            free = required
        if left == -1 and len(free) > len(gap):
            free = free[len(free) - len(gap):]
        placed.update(zip(gap, free))
    return placed
