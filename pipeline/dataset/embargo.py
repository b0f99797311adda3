"""Privacy embargo: which persons may still be alive, and masking their personal data.

Default rule (configurable in RUN_DIR/embargo.yaml): a person is *restricted* when born fewer
than `years` years before today, or when the birth date is unknown and the register itself is
less than `years` years old. Restricted persons keep their non-identifying fields (sex,
relation, occupation... so statistics still work) but their names, dates and addresses are
masked (NULL) in every export, in `census query`, search and browse, unless the user passes
`--include-restricted`. Each masking pass writes what it masked to RUN_DIR/embargo_report.json.

Images are masked by one painter, `redact`: every route that shows handwriting (exported page
images, browse and search row crops, review crops, report thumbnails) paints the boxes of the
restricted persons' masked cells (`hidden_boxes`) with the paper colour before writing it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, Field, ValidationError

from pipeline.errors import UsageError
from pipeline.stages.templates import EXTRA_PREFIX, Template

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

CONFIG_NAME = "embargo.yaml"
REPORT_NAME = "embargo_report.json"
# Field types whose values identify a living person; age gives away the birth year.
DEFAULT_MASKED_TYPES = ["name", "date", "age", "address"]
_YEAR = re.compile(r"(1[5-9]\d\d|20\d\d)")
# Paper colour of a page or crop: this percentile of its pixels (ink is the dark minority).
PAPER_PERCENTILE = 90
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in original page pixels


class EmbargoRule(BaseModel):
    years: int = Field(default=100, ge=0)
    masked_types: list[str] = Field(default_factory=lambda: list(DEFAULT_MASKED_TYPES))
    today: dt.date | None = None  # fixed date for reproducible reports; None = the real today

    def reference_date(self) -> dt.date:
        return self.today or dt.date.today()

    def cutoff(self) -> dt.date:
        """Persons born on or after this date are restricted."""
        today = self.reference_date()
        try:
            return today.replace(year=today.year - self.years)
        except ValueError:  # 29 February
            return today.replace(year=today.year - self.years, day=28)

    def describe(self) -> str:
        return (
            f"restricted: born on/after {self.cutoff().isoformat()} ({self.years} years before "
            f"{self.reference_date().isoformat()}), or no birth date in a register from after "
            f"{self.cutoff().year}; masked field types: {', '.join(self.masked_types)}, and the "
            f"columns the template does not know ({EXTRA_PREFIX}<header>)"
        )


class EmbargoReport(BaseModel):
    rule: str
    include_restricted: bool
    persons: int
    restricted: int
    masked_fields: list[str]
    masked_values: int  # non-empty values replaced by NULL
    masked_cells: int
    restricted_person_ids: list[str] = Field(default_factory=list)


def load_rule(run_dir: Path | None = None, years: int | None = None) -> EmbargoRule:
    """The run's embargo rule: RUN_DIR/embargo.yaml if present, else the default; `years` overrides."""
    rule = EmbargoRule()
    config = Path(run_dir) / CONFIG_NAME if run_dir else None
    if config and config.is_file():
        try:
            rule = EmbargoRule.model_validate(yaml.safe_load(config.read_text(encoding="utf-8")) or {})
        except (yaml.YAMLError, ValidationError) as error:
            raise UsageError(f"invalid embargo config {config}: {error}") from error
    return rule.model_copy(update={"years": years}) if years is not None else rule


def masked_fields(template: Template, rule: EmbargoRule) -> list[str]:
    """Template field keys masked for restricted persons: the masked types, and every printed column the
    template does not know (`extra_<header>`), whose handwriting may name or date anyone."""
    return [column.key for column in template.columns
            if column.type in rule.masked_types or column.key.startswith(EXTRA_PREFIX)]


def birth_date_field(template: Template) -> str | None:
    return next((column.key for column in template.columns if column.type == "date"), None)


def parse_birth(value: object) -> tuple[int, int, int] | None:
    """(year, month, day) of a stored birth date; month/day default to 1 when unknown."""
    if value is None:
        return None
    text = str(value)
    iso = re.match(r"^(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?", text)
    if iso:
        return int(iso.group(1)), int(iso.group(2) or 1), int(iso.group(3) or 1)
    year = _YEAR.search(text)
    return (int(year.group(1)), 1, 1) if year else None


def is_restricted(birth: object, register_year: int | None, rule: EmbargoRule) -> bool:
    """Apply the rule to one person; unknown register year with no birth date counts as recent."""
    cutoff = rule.cutoff()
    parsed = parse_birth(birth)
    if parsed is not None:
        return parsed >= (cutoff.year, cutoff.month, cutoff.day)
    return register_year is None or register_year > cutoff.year


def write_report(run_dir: Path, report: EmbargoReport) -> Path:
    path = Path(run_dir) / REPORT_NAME
    path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return path


def read_report(run_dir: Path) -> dict | None:
    """The last embargo report of the run (for the run report), or None."""
    path = Path(run_dir) / REPORT_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# --- masking cells in images --------------------------------------------------------------------


def restricted_rows(persons: pa.Table) -> set[tuple[str, int]]:
    """(page_id, row) of every restricted person of a persons table (dataset.load)."""
    restricted = persons.filter(persons["restricted"]).select(["page_id", "row"]).to_pydict()
    return set(zip(restricted["page_id"], restricted["row"]))


def masked_cell(field: str | None, masked_fields: set[str]) -> bool:
    """Unmapped columns (field None) may hold anything, so they are masked too."""
    return field is None or field in masked_fields


def hidden_boxes(
    cells: Iterable[Mapping], restricted: set[tuple[str, int]], fields: set[str]
) -> list[Box]:
    """Boxes of the cells (page_id, row, field, x0..y1) that the embargo masks: the masked
    fields (and unmapped columns) of restricted rows, written on or not."""
    return [
        (cell["x0"], cell["y0"], cell["x1"], cell["y1"])
        for cell in cells
        if (cell["page_id"], cell["row"]) in restricted
        and masked_cell(cell["field"], fields)
        and cell["x0"] is not None
    ]


def redact(
    image: np.ndarray, boxes: Iterable[Box], origin: tuple[int, int] = (0, 0), scale: float = 1.0
) -> np.ndarray:
    """Paint `boxes` (original page pixels) with the paper colour, in place, in `image`: the page
    (grey or colour) cut at `origin` (original pixels) and then scaled by `scale`. Returns it."""
    import numpy as np

    boxes = list(boxes)
    if not boxes or image.size == 0:
        return image
    height, width = image.shape[:2]
    pixels = image.reshape(height * width, -1)
    paper = np.percentile(pixels, PAPER_PERCENTILE, axis=0).astype(image.dtype)
    paper = paper[0] if image.ndim == 2 else paper
    for x0, y0, x1, y1 in boxes:
        left = max(0, int(np.floor((x0 - origin[0]) * scale)))
        top = max(0, int(np.floor((y0 - origin[1]) * scale)))
        right = min(width, int(np.ceil((x1 - origin[0]) * scale)))
        bottom = min(height, int(np.ceil((y1 - origin[1]) * scale)))
        if right > left and bottom > top:
            image[top:bottom, left:right] = paper
    return image


def row_crop_box(box: Box, width: int, height: int) -> Box:
    """A row's (or cell's) box inset from its ruling lines (as the cell crops read by the
    recognisers are), clipped to the page: the crop shows that row and nothing of the next."""
    from pipeline.stages.cells import inset
    from pipeline.models import BBox

    inner = inset(BBox(x0=box[0], y0=box[1], x1=box[2], y1=box[3]))
    return (max(0, inner.x0), max(0, inner.y0), min(width, inner.x1), min(height, inner.y1))
