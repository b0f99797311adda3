"""Layout: find the ruled table's grid (row and column boundaries) on a preprocessed page.

Column rules are the long thin vertical strokes (morphological line extraction, small
breaks bridged; sheet edges and folds, with darker paper on one side, dropped); the table
spans their common vertical extent. Horizontal rules are kept when they run through most
of the columns, so handwriting that crosses a rule or underlines a word does not count.
Rules are found on a copy at most WORKING_SIZE px tall, and mapped back. Near-duplicate rules (double
rules) merge. A gap as tall as several rows where rules are missing or too faint is split
evenly; when a table has no row rules at all, rows come from the text lines (the
horizontal projection of the ink between the column rules): one row per line where lines sit at one
pitch and most of them fill two columns or more (a form's people), else one per free-form entry, cut only where no column has ink (on the LECTAUREP test pages
85.1% of the text lines then lay inside one cell, against 76.2% cut between every two lines), and where
entries are numbered, only above a number. Rules under the header with three text lines or more between
them, as a rule, close a register's sections (a month, a visa), not its rows: rows come from the text
lines between them. The
first row is the printed header, both tiers of a two-level header (group titles over the sub-columns' headers, where the rules
between sub-columns start); on a hand-ruled form with nothing ruled under it, the header ends half a
row above the first of the regular handwritten lines, print centred in its columns being no such line
(on one whose rows are ruled, at the row rule's
place above that line). Each group title is a cell of its own over its sub-columns (`Grid.header_groups`),
and a sub-column rule that the handwriting crosses in most rows is no boundary (LECTAUREP test pages:
89.6% of the text lines inside one cell, the header's 95.7%, against 85.1% and 71.7% before; 90.5% once
entries written at one pitch but mostly in one column were no longer taken for a form's rows); crossed
in a few rows, the sub-columns are one cell in those rows (`Grid.spans`).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from pipeline.errors import PageError
from pipeline.models import BBox, CellSpan, Grid, HeaderGroup
from pipeline.stages.image import ink_mask, line_masks, line_profile, rule_positions

MIN_RULE_FRACTION = 0.5  # a rule must cover this share of the table (or of the longest rule)
MAX_ROWS_PER_GAP = 12  # a missing-rule gap is split only into at most this many rows
WORKING_SIZE = 1600  # px: the longer side of the copy the rules are found on
INDEX_ROW_MAX = 0.7  # an index row of column numbers is narrow print: under this share of a data row
MIN_COLUMNS_CROSSED = 0.6  # a row rule runs (maybe broken) through at least this share of the columns
ENTRY_INK_SHARE = 0.05  # of a line's peak ink: less in a pixel row is a stroke reaching across, not writing
HEADER_PHASE = 0.25  # of the pitch: a text line this far from the rows' pitch is not a data row
GROUP_RULE_START = 0.3  # of the header band's height: a column rule starting this far down is a sub-column's
TOUCHING_RUN = 2  # px of ink running on from a column rule's edge: a stroke touching it
ENTRY_NUMBERS = 0.7  # of a register's text lines: a column written in no more of them holds the entries' numbers
NUMBER_INK = 0.3  # of the numbers column's median ink in a numbered line: less is no number
ONE_PER_ROW = 0.8  # of the text lines written in two columns or more: rows of one line each (a form)
WRITTEN_ACROSS = 0.5  # of the data rows with writing at a column rule: crossed in this many, it splits nothing ...
CROSSED_ROWS = 0.3  # ... when they are this share of all the data rows (a few overflowing lines are no pattern)
ENTRY_RULES = 3  # text lines between two rules, as a rule: they close sections of free-form entries, not rows
HEADER_MAX = 0.3  # of the table's height: a band taller than this under group titles is no header
PRINT_MARGIN = 0.03  # of a column's width: print centred in it keeps at least this clear of its rules
SPECKS = 0.1  # of a column's width: writing in fewer of its pixel columns is dust, not a word
HEADING_ROOM = 0.3  # of a header band under its group titles' bottom: room for a column's own heading
PRINTED_CENTRED = 0.7  # of a text line's inked columns: centred in this many, it is print (a header)


class TableRules(BaseModel):
    """The table's long rules in processed-image pixels, before rows are completed."""

    col_bounds: list[int]
    row_rules: list[int]  # horizontal rules across the table, top border first
    top: int  # where most column rules start and end
    bottom: int


def find_rules(image: np.ndarray, expected_columns: int | None = None) -> TableRules:
    """Column rules, the horizontal rules across them, and the table's vertical extent."""
    scale = working_scale(image.shape)
    small = _resize(image, scale)
    table = _find_rules_at_scale(small, *line_masks(small), expected_columns)
    return TableRules(col_bounds=_rescale(table.col_bounds, scale, image.shape[1]),
                      row_rules=_rescale(table.row_rules, scale, image.shape[0]),
                      top=_rescale([table.top], scale, image.shape[0])[0],
                      bottom=_rescale([table.bottom], scale, image.shape[0])[0])


def detect_grid(image: np.ndarray, expected_columns: int | None = None) -> Grid:
    """Grid of a ruled table on a processed page; PageError('no-table') when none is found."""
    scale = working_scale(image.shape)
    small = _resize(image, scale)
    horizontal, vertical = line_masks(small)
    table = _find_rules_at_scale(small, horizontal, vertical, expected_columns)
    lines = horizontal | vertical  # the rules, left out of the ink of text lines
    rules = [rule for index, rule in enumerate(table.row_rules) if index == 0 or rule - table.row_rules[0] >= 4]
    if rules[-1] < table.bottom - _merge_distance(small.shape[0]) * 3:
        rules = [*rules, table.bottom]  # the verticals run on below the last horizontal rule
    if len(rules) < 3:  # the table's borders only: a hand-ruled form with nothing under its headers
        header_end = _header_from_text(small, lines, table.col_bounds, rules[0], rules[-1])
        if header_end is None:
            raise PageError("no-table", f"{len(table.col_bounds)} column rules but no header rule across them, "
                                        "and no printed header above regular text lines")
        rules = _header_tiers(small, vertical, table.col_bounds, [rules[0], header_end, *rules[1:]])
    else:  # the tiers first: a group title's band is no header on its own, nor a row to measure one by
        rules = _unruled_header_end(small, lines, table.col_bounds,
                                    _header_tiers(small, vertical, table.col_bounds, rules))
    rules = _header_under_titles(small, lines, vertical, table.col_bounds, rules)
    index_row_top = rules[1] if _narrow_band_at(rules, 1) else None
    rules = _index_row_in_header(rules)
    body_rules = rules[1:]
    rows_from_text = len(body_rules) < 3 or _rules_between_entries(small, lines, table.col_bounds, body_rules)
    if rows_from_text:  # no rule between the rows: they are the text lines, within the rules there are
        row_bounds = [rules[0], body_rules[0]]
        for top, bottom in zip(body_rules[:-1], body_rules[1:]):
            row_bounds.extend(bound for bound in _rows_from_text(small, lines, table.col_bounds, top, bottom)
                              if bound > row_bounds[-1])
    else:
        row_bounds = [rules[0]] + _fill_missing_rules(body_rules)
    if len(row_bounds) < 3:
        raise PageError("no-table", "a header but no data rows")
    col_bounds, groups, spans = _sub_columns(small, lines, vertical, table.col_bounds, row_bounds)
    groups = [group.model_copy(update={"bottom": _rescale([group.bottom], scale, image.shape[0])[0]})
              for group in groups]
    return Grid(row_bounds=_rescale(row_bounds, scale, image.shape[0]),
                col_bounds=_rescale(col_bounds, scale, image.shape[1]),
                header_rows=1, rows_from_text=rows_from_text, header_groups=groups, spans=spans,
                index_row_top=None if index_row_top is None else _rescale([index_row_top], scale, image.shape[0])[0])


def working_scale(shape: tuple[int, ...]) -> float:
    """Rules and text lines are found on a copy at most WORKING_SIZE px tall: plenty, and 3-4x faster."""
    return min(1.0, WORKING_SIZE / max(shape[:2]))


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale >= 1.0:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _rescale(positions: list[int], scale: float, limit: int) -> list[int]:
    return [min(limit, max(0, int(round(position / scale)))) for position in positions]


def _find_rules_at_scale(image: np.ndarray, horizontal: np.ndarray, vertical: np.ndarray,
                         expected_columns: int | None) -> TableRules:
    col_bounds = _column_rules(image, vertical, expected_columns)
    top, bottom = _table_extent(vertical, col_bounds)
    return TableRules(col_bounds=col_bounds, row_rules=_row_rules(image, horizontal, col_bounds, top, bottom),
                      top=top, bottom=bottom)


def cell_box(grid: Grid, row: int, col: int) -> BBox:
    """Box of data row `row` (0-based, header excluded), column `col`, in processed-image pixels: of all the
    columns of a cell written across sub-columns (`span_at`)."""
    top = grid.header_rows + row
    span = span_at(grid, row, col)
    first, last = (span.first, span.last) if span else (col, col)
    return BBox(x0=grid.col_bounds[first], y0=grid.row_bounds[top],
                x1=grid.col_bounds[last + 1], y1=grid.row_bounds[top + 1])


def span_at(grid: Grid, row: int, col: int) -> CellSpan | None:
    """The cell written across sub-columns that data row `row`'s column `col` is part of, if any."""
    return next((span for span in grid.spans if span.row == row and span.first <= col <= span.last), None)


def header_box(grid: Grid, col: int) -> BBox:
    """Box of the printed header of column `col` (all header rows), in processed-image pixels."""
    return BBox(x0=grid.col_bounds[col], y0=grid.row_bounds[0],
                x1=grid.col_bounds[col + 1], y1=grid.row_bounds[grid.header_rows])


def heading_box(grid: Grid, col: int) -> BBox:
    """Where column `col`'s own heading is printed, to be read: its header cell (`header_box`) less the row of
    column numbers under it, and less its group's title over it where that leaves a heading's room below
    (HEADING_ROOM of the band; a group found from sub-column rules starting at the numbers row leaves none)."""
    box = header_box(grid, col)
    bottom = box.y1 if grid.index_row_top is None else grid.index_row_top
    group = next((group for group in grid.header_groups if group.first <= col <= group.last), None)
    under_title = group is not None and bottom - group.bottom >= HEADING_ROOM * (bottom - box.y0)
    return BBox(x0=box.x0, y0=group.bottom if under_title else box.y0, x1=box.x1, y1=bottom)


def n_data_rows(grid: Grid) -> int:
    return len(grid.row_bounds) - 1 - grid.header_rows


# --- columns -------------------------------------------------------------------------------


def _merge_distance(size: int) -> int:
    """Rules closer than this are one (double) rule."""
    return max(6, size // 150)


def _column_rules(image: np.ndarray, vertical: np.ndarray, expected_columns: int | None) -> list[int]:
    profile = line_profile(vertical, axis=0)
    if profile.max(initial=0) < 0.1 * vertical.shape[0]:
        raise PageError("no-table", "no long vertical rules")
    positions = rule_positions(profile, MIN_RULE_FRACTION * profile.max(), _merge_distance(vertical.shape[1]))
    positions = [x for x in positions if not _is_sheet_edge(image, x, axis=0)]
    if expected_columns is not None and len(positions) > expected_columns + 1:
        positions = _strongest(positions, profile, expected_columns + 1)
    if len(positions) < 2:
        raise PageError("no-table", f"{len(positions)} column rule(s) found; a table needs 2")
    return positions


def _is_sheet_edge(image: np.ndarray, position: int, axis: int, span: tuple[int, int] | None = None) -> bool:
    """A sheet's edge or a fold, not a rule: the paper on one side is much darker than on the other."""
    offset, width = 4, 8
    if axis == 0:  # a vertical line at x = position
        before = image[:, max(0, position - offset - width): max(0, position - offset)]
        after = image[:, position + offset: position + offset + width]
    else:
        start, end = span or (0, image.shape[1])
        before = image[max(0, position - offset - width): max(0, position - offset), start:end]
        after = image[position + offset: position + offset + width, start:end]
    if before.size == 0 or after.size == 0:
        return True  # a line on the image border is the border
    return abs(float(np.median(before)) - float(np.median(after))) > 25


def _strongest(positions: list[int], profile: np.ndarray, keep: int) -> list[int]:
    """Drop the weakest rules while there are more than `keep` and they are clearly shorter than
    the typical rule (page edges, header subdivisions); rules as long as the others all stay,
    so a register with one column more than its template keeps every column."""
    strength = {x: float(profile[max(0, x - 3): x + 4].max()) for x in positions}
    typical = float(np.median(list(strength.values())))
    kept = list(positions)
    for x in sorted(positions, key=strength.get):
        if len(kept) <= keep or strength[x] >= 0.8 * typical:
            break
        kept.remove(x)
    return kept


def _table_extent(vertical: np.ndarray, col_bounds: list[int]) -> tuple[int, int]:
    """Top and bottom of the table: where most column rules start and end."""
    reach = _merge_distance(vertical.shape[1]) + 4  # a merged double rule's centre can lie between its lines
    tops, bottoms = [], []
    for x in col_bounds:
        rows = np.flatnonzero(vertical[:, max(0, x - reach): x + reach + 1].any(axis=1))
        if len(rows):
            tops.append(rows[0])
            bottoms.append(rows[-1])
    return int(np.median(tops)), int(np.median(bottoms))


def _sub_columns(image: np.ndarray, lines: np.ndarray, vertical: np.ndarray, col_bounds: list[int],
                 row_bounds: list[int]) -> tuple[list[int], list[HeaderGroup], list[CellSpan]]:
    """The column rules, the header's groups and the cells written across sub-columns. A rule between the
    sub-columns of a group that the handwriting crosses in most data rows is no boundary: a notary's "en
    brevets | en minutes" under "Nature et espèce des actes", that clerks write each act's name across. Cut
    there, every name would be read in two halves. Where it is crossed in a few rows only, those rows' cells
    on either side are one (`CellSpan`). A rule between two columns of their own never goes: writing there
    may run up to it from both sides."""
    groups = _header_groups(vertical, col_bounds, row_bounds[0], row_bounds[1])
    if not groups:
        return col_bounds, groups, []
    ink = ink_mask(image)
    writing = text_ink(image, lines, ink=ink)
    groups = [group for group in groups if _titled(writing, col_bounds, group, row_bounds[0])]
    sub_rules = [col_bounds[index] for group in groups for index in range(group.first + 1, group.last + 1)]
    crossed = {x: _crossed_in_rows(writing, ink, vertical, x, row_bounds[1:]) for x in sub_rules}
    kept = [x for x in col_bounds if x not in crossed or not _written_across(*crossed[x])]
    if kept != col_bounds:  # a sub-column rule dropped: the groups' columns renumbered
        groups = [group for group in _header_groups(vertical, kept, row_bounds[0], row_bounds[1])
                  if _titled(writing, kept, group, row_bounds[0])]
    return kept, groups, _spans(writing, kept, row_bounds[1:], {kept.index(x): crossed[x][1] for x in crossed
                                                                if x in kept})


def _titled(writing: np.ndarray, col_bounds: list[int], group: HeaderGroup, top: int, reach: int = 4) -> bool:
    """Whether a group's title is printed over its sub-columns, above where their rules start: a word (letters
    joined) runs across one of their rules, or the print there is not each column's own, centred in it. A
    column rule broken in the header band starts low too, with a heading centred in each column beside it."""
    bounds = col_bounds[group.first: group.last + 2]
    clear = max(2, (group.bottom - top) // 8)  # of the table's top rule, worn or skewed into the band
    band = writing[top + clear: group.bottom - 2, bounds[0]: bounds[-1]].any(axis=0)
    words = _runs(band, 3, 5) if band.size else []  # letters joined, across what the rules mask took
    if any(start < x - bounds[0] - reach and end > x - bounds[0] + reach for x in bounds[1:-1] for start, end in words):
        return True
    for x in bounds[1:-1]:  # what is left of a broken rule is no heading
        band[max(0, x - bounds[0] - reach): x - bounds[0] + reach + 1] = False
    inked = [x0 for x0, x1 in zip(bounds[:-1], bounds[1:]) if band[x0 - bounds[0]: x1 - bounds[0]].sum()
             >= max(3, SPECKS * (x1 - x0))]
    return len(inked) < 2 or not _centred_in_columns(band, bounds)


def _crossed_in_rows(writing: np.ndarray, ink: np.ndarray, rule: np.ndarray, x: int,
                     body_bounds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """In which data rows there is writing beside the column rule at `x`, and in which it crosses the rule:
    in at least 3 pixel rows, writing within a few pixels of it on both sides (the rule itself left out),
    touching the rule on both sides (`_touches_rule`), so that two words written up to it from either
    side, one of them clear of it, are no crossing."""
    reach, band, least = 8, 5, 3
    left = writing[:, max(0, x - reach): max(0, x - reach + band)].any(axis=1)
    right = writing[:, x + reach - band + 1: x + reach + 1].any(axis=1)
    from_left, from_right = (_slanting(written & _touches_rule(ink, rule, x, side))
                             for written, side in ((left, -1), (right, 1)))
    rows = list(zip(body_bounds[:-1], body_bounds[1:]))
    beside = np.array([(left[top:bottom] | right[top:bottom]).sum() >= least for top, bottom in rows])
    clear = band  # px kept off the row's rules: a rule runs on from both sides of the column rule
    across = np.array([(from_left[top + clear: bottom - clear] & from_right[top + clear: bottom - clear]).sum()
                       >= least for top, bottom in rows])
    return beside, across


def _touches_rule(ink: np.ndarray, rule: np.ndarray, x: int, side: int, reach: int = 4) -> np.ndarray:
    """In which pixel rows ink runs on from the rule near `x` (its pixels in the `rule` mask), at its left
    (`side` -1) or right (+1) edge, for TOUCHING_RUN pixels (the rule's own ink, wider than its mask by a
    pixel, is no stroke), within 2 pixel rows (`_slanting`)."""
    window = slice(max(0, x - reach), x + reach + 1)
    on_rule = rule[:, window]
    columns = np.arange(on_rule.shape[1])
    has_rule = on_rule.any(axis=1)
    edge = (np.where(on_rule, columns, -1).max(axis=1) + 1 if side > 0
            else np.where(on_rule, columns, on_rule.shape[1]).min(axis=1) - 1) + window.start
    rows = np.arange(len(ink))
    outward = [edge + step * side for step in range(TOUCHING_RUN)]
    touching = has_rule & (outward[-1] >= 0) & (outward[-1] < ink.shape[1]) & (edge >= 0) & (edge < ink.shape[1])
    touching[touching] = np.logical_and.reduce([ink[rows[touching], column[touching]] for column in outward])
    return _slanting(touching)


def _slanting(rows: np.ndarray) -> np.ndarray:
    """Pixel rows flagged, widened by 2 on either side: a stroke crossing a rule slants, and reaches its two
    sides a few pixel rows apart."""
    return np.convolve(rows, np.ones(5), mode="same") > 0


def _written_across(beside: np.ndarray, across: np.ndarray) -> bool:
    """Crossed in WRITTEN_ACROSS of the rows with writing beside the rule, and in CROSSED_ROWS of all rows (on a
    synthetic page a few addresses overflowing into the next column crossed it in 3 of 21 rows)."""
    return across.sum() >= WRITTEN_ACROSS * beside.sum() and across.sum() >= CROSSED_ROWS * len(across)


def _spans(writing: np.ndarray, col_bounds: list[int], body_bounds: list[int],
           crossed_rules: dict[int, np.ndarray]) -> list[CellSpan]:
    """One cell for each run of sub-columns whose rules between them the writing crosses in a data row
    (`crossed_rules`: the rule's index in `col_bounds` -> the rows it is crossed in), read into the column
    holding most of that writing."""
    spans = []
    for row, (top, bottom) in enumerate(zip(body_bounds[:-1], body_bounds[1:])):
        for first, last in _runs(np.array([index in crossed_rules and bool(crossed_rules[index][row])
                                           for index in range(len(col_bounds))]), 1, 0):
            columns = range(first - 1, last)  # rules first..last-1 crossed: columns first-1..last-1 joined
            written = [writing[top:bottom, col_bounds[col]: col_bounds[col + 1]].sum() for col in columns]
            spans.append(CellSpan(row=row, first=first - 1, last=last - 1, col=columns[int(np.argmax(written))]))
    return spans


def _header_groups(vertical: np.ndarray, col_bounds: list[int], top: int, bottom: int) -> list[HeaderGroup]:
    """The group titles of a two-level header: runs of columns whose rules between them start well down
    the header band (GROUP_RULE_START of it, under the title they share), each group down to where the
    first of its sub-column rules starts. A rule missing from the whole band joins its columns under one
    heading printed across both."""
    height = bottom - top
    if height < 20:
        return []
    reach, gap = _merge_distance(vertical.shape[1]) + 4, _merge_distance(vertical.shape[0])
    groups: list[HeaderGroup] = []
    for index, x in enumerate(col_bounds[1:-1], start=1):
        start = _start_of_rule(vertical[top:bottom, max(0, x - reach): x + reach + 1].any(axis=1), gap)
        if start < GROUP_RULE_START * height:
            continue
        if groups and groups[-1].last == index - 1:
            groups[-1] = groups[-1].model_copy(update={"last": index, "bottom": min(groups[-1].bottom, top + start)})
        else:
            groups.append(HeaderGroup(first=index - 1, last=index, bottom=top + start))
    return groups


def _start_of_rule(present: np.ndarray, gap: int) -> int:
    """Where a rule running down to the end of `present` (a column of the rule mask) starts, breaks up to
    `gap` bridged; len(present) when it does not reach the end."""
    on = np.flatnonzero(present)
    if not len(on) or on[-1] < len(present) - gap:
        return len(present)
    start = int(on[-1])
    for y in on[::-1]:
        if start - y > gap:
            break
        start = int(y)
    return start


# --- rows ----------------------------------------------------------------------------------


def _row_rules(image: np.ndarray, horizontal: np.ndarray, col_bounds: list[int], top: int,
               bottom: int) -> list[int]:
    """Horizontal rules running through most columns, within the table's extent (page edges excluded).

    Through most columns, not merely across much of the width: handwriting underlines and
    flourishes in one or two wide columns can add up to a long but partial line.
    """
    left, right = col_bounds[0], col_bounds[-1]
    profile = line_profile(horizontal[:, left:right], axis=1)
    merge = _merge_distance(horizontal.shape[0])
    candidates = rule_positions(profile, 0.3 * (right - left), merge)
    tolerance = 3 * merge
    rules = [y for y in candidates
             if top - tolerance <= y <= bottom + tolerance and _crosses_columns(horizontal, y, col_bounds)
             and not _is_sheet_edge(image, y, axis=1, span=(left, right))]
    if not rules or rules[0] > top + tolerance:
        rules.insert(0, top)  # a table open at the top: its rules start where the verticals do
    return rules


def _crosses_columns(horizontal: np.ndarray, y: int, col_bounds: list[int], spread: int = 3) -> bool:
    """Whether the line at `y` is a row rule: through most columns and covering most of the width
    between the first and last of them, or (a badly worn rule) through fewer columns but most
    of the table's width.

    Handwritten underlines fill one or two columns; a rule under grouped headers skips whole,
    wide columns; bare columns at the ends of a true rule are margins outside the table.
    """
    strip = horizontal[max(0, y - spread): y + spread + 1].any(axis=0)
    spans = [(start, end) for start, end in zip(col_bounds[:-1], col_bounds[1:]) if end > start]
    coverage = np.array([strip[start:end].mean() for start, end in spans])
    crossed = np.flatnonzero(coverage >= 0.6)
    if len(crossed) == 0:
        return False
    share = len(crossed) / len(coverage)
    between_ends = strip[spans[crossed[0]][0]: spans[crossed[-1]][1]].mean()
    overall = strip[col_bounds[0]: col_bounds[-1]].mean()
    return bool((share >= MIN_COLUMNS_CROSSED and between_ends >= 0.6) or (share >= 0.4 and overall >= 0.6))


def _unruled_header_end(image: np.ndarray, lines: np.ndarray, col_bounds: list[int], rules: list[int]) -> list[int]:
    """The rules with the header's end added when rows are ruled but nothing is ruled under the headers: the
    first band then holds the header and a row at the rows' pitch, its text line placed as the rows' are.
    Unchanged when the first band is too short to hold a row under a header, or no data row is found in it."""
    if len(rules) < 5:
        return rules
    pitch = float(np.median(np.diff(rules[1:])))
    if rules[1] - rules[0] < 1.6 * pitch:
        return rules
    end = _header_from_text(image, lines, col_bounds, rules[0], rules[3])
    if end is None or not rules[0] + 0.5 * pitch < end < rules[1] - 0.6 * pitch:
        return rules
    rows_above = round((rules[1] - end) / pitch)  # where the missing rule was printed: whole rows above the first
    return [rules[0], int(round(rules[1] - rows_above * pitch)), *rules[1:]]


def _header_tiers(image: np.ndarray, vertical: np.ndarray, col_bounds: list[int], rules: list[int]) -> list[int]:
    """The horizontal rules with those inside a two-level header dropped: the rule under a line of group
    titles, where the rules between the sub-columns of a group start.

    A band of group titles is no taller than the headers under it (with the index row under them, if
    any); a one-level header whose print spans two columns is taller than the data row under it, so its
    column rule starting at the header rule does not make that row part of the header. Nor is a band
    over HEADER_MAX of the table a header: free-form entries under a register's sub-headers, with no rule
    before a month's end, are taller than the group titles over them too."""
    while len(rules) >= 4:
        headers_under = rules[3 if _narrow_band_at(rules, 2) else 2] - rules[1]
        if not (rules[1] - rules[0] <= headers_under <= HEADER_MAX * (rules[-1] - rules[0])
                and _spans_columns(image, vertical, col_bounds, (rules[0], rules[1]), (rules[1], rules[2]))):
            break
        rules = [rules[0], *rules[2:]]
    return rules


def _header_under_titles(image: np.ndarray, lines: np.ndarray, vertical: np.ndarray, col_bounds: list[int],
                         rules: list[int]) -> list[int]:
    """The rules with the header's end added when the only rule under the table's top closes a band of group
    titles (the rules between the sub-columns start under it) and nothing is ruled under the headers below
    it, nor between the rows, on a form (one person a line): the header then ends above the first regular
    handwritten line. Free-form entries under a header are never taken for more header."""
    if len(rules) != 3:
        return rules
    end = _header_from_text(image, lines, col_bounds, rules[1], rules[2])
    if end is None or not _spans_columns(image, vertical, col_bounds, (rules[0], rules[1]), (rules[1], end)):
        return rules
    ink = _table_ink(image, lines, col_bounds, end, rules[2])
    if _form_rows(ink, col_bounds, _text_bands(_ink_rows(ink), image.shape[0])) is None:
        return rules
    return [rules[0], end, rules[2]]


def _spans_columns(image: np.ndarray, vertical: np.ndarray, col_bounds: list[int], band: tuple[int, int],
                   next_band: tuple[int, int], spread: int = 3) -> bool:
    """Whether some column rule runs down `next_band` but not through `band`, the band beside it: no ink
    runs down most of `band` there (the rule mask is not used, as it bridges a letter to the rules around
    it)."""
    if band[1] - band[0] <= 8 or next_band[1] - next_band[0] <= 8:
        return False
    ink = ink_mask(image[band[0] + 2: band[1] - 2], offset=8)  # as line_masks sees ink
    for x in col_bounds[1:-1]:
        near = slice(max(0, x - spread), x + spread + 1)
        longest = max((end - start for column in ink[:, near].T for start, end in _runs(column, 1, 0)), default=0)
        if longest < 0.8 * len(ink) and vertical[next_band[0] + 2: next_band[1] - 2, near].any(axis=1).mean() > 0.8:
            return True
    return False


def _index_row_in_header(rules: list[int]) -> list[int]:
    """The horizontal rules with the header rule dropped when a narrow band under it follows: a printed row
    of column numbers, (1) (2) (3) ..., that belongs to the header band, not a data row.

    Narrow: under INDEX_ROW_MAX of the body's typical band (rows, or the whole body when it has no row
    rules); a doubled header rule is one too, and is merged the same way.
    """
    return [rules[0], *rules[2:]] if _narrow_band_at(rules, 1) else rules


def _narrow_band_at(rules: list[int], k: int) -> bool:
    """Whether the band under rules[k] is narrow print (under INDEX_ROW_MAX of the typical band below it)."""
    bands = np.diff(rules[k:])
    return bool(len(bands) >= 2 and bands[0] < INDEX_ROW_MAX * float(np.median(bands[1:])))


def _rules_between_entries(image: np.ndarray, lines: np.ndarray, col_bounds: list[int],
                           body_rules: list[int]) -> bool:
    """Whether the rules under the header close a register's sections (a month, a visa), not its rows:
    ENTRY_RULES text lines or more lie between two of them, as a rule. Ruled rows hold one line each,
    two where a cell's text wraps."""
    bands = _text_bands(_ink_rows(_table_ink(image, lines, col_bounds, body_rules[0], body_rules[-1])),
                        image.shape[0])
    if len(bands) < 3:
        return False
    line_pitch = float(np.median(np.diff([(start + end) / 2 for start, end in bands])))
    return float(np.median(np.diff(body_rules))) >= ENTRY_RULES * line_pitch


def _fill_missing_rules(bounds: list[int]) -> list[int]:
    """Split gaps that are a whole multiple (≥ 2) of the typical row height into equal rows."""
    gaps = np.diff(bounds)
    pitch = float(np.median(gaps))
    filled = [bounds[0]]
    for start, gap in zip(bounds[:-1], gaps):
        ratio = gap / pitch
        parts = int(round(ratio))
        if 2 <= parts <= MAX_ROWS_PER_GAP and abs(ratio - parts) < 0.25:
            filled.extend(int(round(start + gap * k / parts)) for k in range(1, parts))
        filled.append(int(start + gap))
    return filled


def text_ink(image: np.ndarray, lines: np.ndarray, rows: slice = slice(None),
             cols: slice = slice(None), ink: np.ndarray | None = None) -> np.ndarray:
    """The ink of `image[rows, cols]` (`ink`, when already found on the whole image) with the rules
    (`lines`, widened by 2 px) left out: the handwriting."""
    import cv2

    rules = cv2.dilate(lines[rows, cols].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return (ink_mask(image[rows, cols]) if ink is None else ink[rows, cols]) & ~rules


def _table_ink(image: np.ndarray, lines: np.ndarray, col_bounds: list[int], top: int,
               bottom: int) -> np.ndarray:
    """The handwriting (and print) between `top` and `bottom` across the table, rules left out."""
    left, right = col_bounds[0], col_bounds[-1]
    if bottom - top < 2 or right - left < 2:
        return np.zeros((0, max(0, right - left)), dtype=bool)
    return text_ink(image, lines, slice(top, bottom), slice(left, right))


def _ink_rows(ink: np.ndarray) -> np.ndarray:
    """Ink in each pixel row of a `_table_ink` mask, smoothed over 5."""
    if not len(ink):
        return np.zeros(0)
    return np.convolve(ink.sum(axis=1).astype(np.float64), np.ones(5) / 5, mode="same")


def _text_bands(profile: np.ndarray, page_height: int, share: float = 0.3) -> list[tuple[int, int]]:
    """[start, end) of each text line in an ink `profile` (`_ink_rows`, offsets from its top): the runs of
    pixel rows with ink over `share` of a typical line's peak. A text line at the default 30% (measured on
    real registers: lower merges lines whose ascenders and descenders touch, higher cuts faint lines)."""
    if profile.max(initial=0) == 0:
        return []
    on = profile > share * np.percentile(profile[profile > 0], 90)
    return _runs(on, min_length=max(6, page_height // 400), merge_within=max(3, page_height // 500))


def _header_from_text(image: np.ndarray, lines: np.ndarray, col_bounds: list[int], top: int,
                      bottom: int) -> int | None:
    """Where the printed header ends on a table ruled with nothing under it: half a row above the first
    text line that is a data row, or None when the lines below show no regular rows.

    Data rows are lines at the body's pitch, each about as tall as a handwritten line; the header's
    print, wrapped over several lines in narrow columns, makes a taller band (or a thin tail of one)
    off that pitch."""
    ink = _table_ink(image, lines, col_bounds, top, bottom)
    bands = _text_bands(_ink_rows(ink), image.shape[0])
    if len(bands) < 4:
        return None
    heights = np.array([end - start for start, end in bands], dtype=np.float64)
    centres = np.array([(start + end) / 2 for start, end in bands])
    body_height, pitch = float(np.median(heights[1:])), float(np.median(np.diff(centres[1:])))
    if pitch <= 0:
        return None

    printed = [_centred_in_columns(ink[start:end].any(axis=0), col_bounds) for start, end in bands]

    def is_data_row(k: int) -> bool:  # a line of a handwritten height, followed by two more at the pitch
        steps = np.diff(centres[k:k + 3])  # (a header's thin tail between them would be off both)
        return (len(steps) == 2 and not any(printed[k:k + 3])
                and bool(np.all((heights[k:k + 3] >= 0.6 * body_height)
                                & (heights[k:k + 3] <= 1.5 * body_height)))
                and bool(np.all(np.abs(steps / pitch - 1) < HEADER_PHASE)))

    first = next((k for k in range(len(bands) - 2) if is_data_row(k)), None)
    if not first:  # none, or the first line is a data row: no header told apart
        return None
    return top + max(bands[first - 1][1], int(round(centres[first] - pitch / 2)))


def _centred_in_columns(ink: np.ndarray, col_bounds: list[int]) -> bool:
    """Whether a text line is print centred in its columns, as a form's headers are: in most of the columns it
    has ink in (by width: a narrow column's one letter is centred by chance), the margins left and right of
    the ink are nearly equal and clear of the rules. Handwriting starts at a column's left and ends where the
    entry does. `ink`: whether each pixel column of the table (from col_bounds[0]) has the line's writing."""
    centred = inked = 0
    for x0, x1 in zip(col_bounds[:-1], col_bounds[1:]):
        words = _runs(ink[x0 - col_bounds[0]: x1 - col_bounds[0]], 3, 3)  # letters joined, specks of dust left out
        if sum(end - start for start, end in words) < max(3, SPECKS * (x1 - x0)):  # dust, or nothing: not weighed
            continue
        width, left, right = x1 - x0, words[0][0], x1 - x0 - words[-1][1]
        inked += width
        centred += width * (min(left, right) >= PRINT_MARGIN * width and abs(left - right) <= 0.1 * width)
    return inked > 0 and centred >= PRINTED_CENTRED * inked


def _rows_from_text(image: np.ndarray, lines: np.ndarray, col_bounds: list[int], top: int,
                    bottom: int) -> list[int]:
    """Row bounds from the text lines between `top` and `bottom`: boundaries mid-way between lines."""
    ink = _table_ink(image, lines, col_bounds, top, bottom)
    profile = _ink_rows(ink)
    bands = _text_bands(profile, image.shape[0])
    if not bands:
        return [bottom]
    uniform = _form_rows(ink, col_bounds, bands)
    if uniform is not None:
        return [top + offset for offset in uniform]
    # Free-form entries: rows are cut only where no column has ink, so that a short line off the long
    # lines' pitch (an entry's number, a date beside a name written over several lines) stays whole,
    # and only above an entry's first line where entries are numbered.
    pieces = _text_bands(profile, image.shape[0], share=ENTRY_INK_SHARE) or bands
    line_height = float(np.median([end - start for start, end in bands]))
    starts = _entry_starts(_column_ink(ink, col_bounds, pieces), 2 * line_height)
    return [top, *(top + (pieces[k - 1][1] + pieces[k][0]) // 2 for k in starts if k > 0), bottom]


def _entry_starts(column_ink: np.ndarray, least_ink: float) -> list[int]:
    """Which of the text lines (`column_ink`: each one's ink in each column, `_column_ink`; written where
    `least_ink` or more) begin an entry. Where entries of several lines are numbered, the leftmost column
    written in at most ENTRY_NUMBERS of the lines, and in half as many as the most written of those (a stray
    mark in the margin is no number), holds their numbers: entries begin at its lines, those with a number's
    ink (NUMBER_INK of the column's median; less is a number's tail or a feint rule's dots reaching the next
    line). Elsewhere each line (or run of lines with no gap between them) is an entry of its own."""
    written = column_ink >= least_ink
    counts = written.sum(axis=0)
    short = [count for count in counts if count <= ENTRY_NUMBERS * len(written)]
    least = max(2.0, 0.5 * max(short, default=0))
    numbers = next((col for col, count in enumerate(counts) if count >= least), None)
    if numbers is None:
        return list(range(len(written)))
    numbers_ink = column_ink[:, numbers]
    numbered = numbers_ink >= max(least_ink, NUMBER_INK * np.median(numbers_ink[written[:, numbers]]))
    if numbered.sum() > ENTRY_NUMBERS * len(written):
        return list(range(len(written)))
    return [int(k) for k in np.flatnonzero(numbered)]


def _form_rows(ink: np.ndarray, col_bounds: list[int], bands: list[tuple[int, int]]) -> list[int] | None:
    """A form's rows (offsets into `ink`, a `_table_ink` mask) when the text lines (`bands`) sit one per row
    at one pitch and most fill two columns or more (ONE_PER_ROW of them); None for free-form entries. On a
    form with one person a row nearly every line fills several columns; in a register of free-form entries
    most lines continue one column's text (a notary's names and addresses) while the others stay blank."""
    uniform = _uniform_rows(bands, len(ink))
    if uniform is None or np.mean(_written_columns(ink, col_bounds, bands).sum(axis=1) >= 2) < ONE_PER_ROW:
        return None
    return uniform


def _written_columns(ink: np.ndarray, col_bounds: list[int], bands: list[tuple[int, int]]) -> np.ndarray:
    """Which columns each text line (`bands`, offsets into `ink`, a `_table_ink` mask) has writing in: ink
    for a stroke twice the line's height or more."""
    heights = np.array([end - start for start, end in bands], dtype=np.float64)
    return _column_ink(ink, col_bounds, bands) >= 2 * heights[:, None]


def _column_ink(ink: np.ndarray, col_bounds: list[int], bands: list[tuple[int, int]]) -> np.ndarray:
    """The ink of each text line (`bands`, offsets into `ink`, a `_table_ink` mask) in each column."""
    left = col_bounds[0]
    return np.array([[ink[start:end, x0 - left: x1 - left].sum() for x0, x1 in zip(col_bounds[:-1], col_bounds[1:])]
                     for start, end in bands], dtype=np.int64).reshape(len(bands), len(col_bounds) - 1)


def _uniform_rows(bands: list[tuple[int, int]], height: int) -> list[int] | None:
    """Equal rows filling `height` when the text lines sit one per row at a regular pitch.

    A printed register has rows of one height even where its row rules are missing, and
    this also recovers the empty rows that hold no text line. None when lines are irregular
    (free-form entries of several lines each), so that rows are cut between text lines.
    """
    if len(bands) < 3:
        return None
    centres = np.array([(start + end) / 2 for start, end in bands])
    pitch = float(np.median(np.diff(centres)))
    n_rows = int(round(height / pitch)) if pitch > 0 else 0
    if n_rows < 0.75 * len(bands):  # a few lines may come out in two bands, not many
        return None
    row_height = height / n_rows
    phase = (centres / row_height) % 1.0
    if np.mean((phase > 0.15) & (phase < 0.85)) < 0.9:
        return None
    return [int(round(k * row_height)) for k in range(n_rows + 1)]


def _runs(on: np.ndarray, min_length: int, merge_within: int) -> list[tuple[int, int]]:
    """[start, end) of True runs, nearby runs merged, short ones dropped."""
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))
    merged: list[tuple[int, int]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] <= merge_within:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [(int(start), int(end)) for start, end in merged if end - start >= min_length]
