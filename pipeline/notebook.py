"""Python API for notebooks: a run's persons, households, cells, search hits and SQL results as
pandas DataFrames, with the same embargo as every other route.

    from pipeline import open_run        # or: from census import open_run
    run = open_run("runs/samples")
    people = run.persons()               # one row per register row, restricted persons masked
    run.households().head()
    run.cells(status="needs_review")
    run.search("Josep Puig", born=(1880, 1890))
    run.query("SELECT relation, COUNT(*) AS n FROM persons GROUP BY relation")
    run.crop(person_id)                  # PIL image of the person's register row

Nothing here reads the store itself: persons, households, cells and `query` are SQL over the
Parquet snapshot of `census query` (pipeline.dataset.query, itself built from pipeline.dataset.dataset, where
corrections and the embargo are applied), `search` is pipeline.dataset.search and `crop` cuts the row
with pipeline.dataset.search.crop_image like the browse view. So a DataFrame holds what `census query`
and `census export` give on the same run, typed for pandas:

- integers are nullable (`Int32`, `Int64`), booleans `boolean`, floats `Float32`/`Float64`,
  text `string`; a missing or masked value is `<NA>`;
- fields with a vocabulary (sex, relation, marital status, literacy) are categoricals whose
  categories are the template's canonical keys (then any other value read, so nothing is lost);
- date fields (birth_date) are datetimes; a date written as a year or a month alone falls on
  its first day, and `<field>_precision` (`year`, `month`, `day`) beside it says which it was.

Restricted persons (pipeline.dataset.embargo: born under `years` years ago, or undated in a recent
register) keep their rows with names, dates, ages and addresses masked, are left out of search
hits, and have no crop; `include_restricted=True` shows everything and must be asked for on
each call.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import pyarrow as pa

from pipeline.dataset import dataset, embargo, query
from pipeline.run import store
from pipeline.errors import UsageError
from pipeline.stages.fields import VOCABULARY_TYPES
from pipeline.models import CellStatus

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

CELL_STATUSES: tuple[str, ...] = get_args(CellStatus)
DATE_PRECISION = {4: "year", 7: "month", 10: "day"}  # length of the ISO text -> what was written
_ISO_DATE = re.compile(r"\d{4}(?:-\d{2}(?:-\d{2})?)?")
SEARCH_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("page_id", pa.string()),
        ("row", pa.int32()),
        ("name", pa.string()),
        ("birth_year", pa.int32()),
        ("birth_place", pa.string()),
        ("score", pa.float64()),
        ("confidence", pa.float64()),
    ]
)


def open_run(run_dir: str | Path) -> Run:
    """Open a run directory made by `census run` (it holds census.sqlite) for analysis.

    Returns a `Run`; see `help(Run)` for its methods. Raises `UsageError` with a one-line
    reason when `run_dir` is not a run. Opening reads nothing but the register template; each
    method refreshes the Parquet snapshot or search index first when the store has changed
    since (reviewers' corrections appear without reopening).
    """
    return Run(run_dir)


class Run:
    """One census run, read-only. Every method returns a new pandas DataFrame (or a PIL image).

    Masking: by default restricted persons' names, dates, ages and addresses are <NA> (rows
    kept, `restricted` True), their cells' text is <NA>, and search leaves them out. Pass
    `include_restricted=True` to a call to see everything; it applies to that call only.

    Attributes: `run_dir` (Path), `template` (the register template: columns, vocabularies),
    `embargo` (the run's embargo rule, in words).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        path = dataset.store_path(self.run_dir)
        try:
            with dataset.readonly(path) as connection:
                self.template = store.stored_template(connection)
        except (sqlite3.DatabaseError, TypeError) as error:
            raise UsageError(
                f"{path} is not a census store ({error}): run `census run` into a new folder"
            ) from error
        self.embargo = embargo.load_rule(self.run_dir).describe()

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, register={self.template.name!r})"

    # --- tables -------------------------------------------------------------------------------

    def persons(self, include_restricted: bool = False) -> pd.DataFrame:
        """One row per person (register row), ordered by page and row: the persons of
        `census export` (see its codebook.md) and of `census query`'s `persons` view.

        Columns: person_id, page_id, row, register, year, household_id, every template field
        (typed: see the module help), birth_year, confidence, min_confidence,
        cells_needs_review, cells_corrected, consistency_flags, restricted, cell_ids (JSON),
        and the row's box x0, y0, x1, y1 in original page pixels.
        """
        return self.query("SELECT * FROM persons ORDER BY page_id, row", include_restricted)

    def households(self, include_restricted: bool = False) -> pd.DataFrame:
        """One row per household, ordered by household_id (`census export` households).

        Columns: household_id, register, year, page_id, first_row, size, head_person_id,
        head_name, address, relations (comma-separated, in row order), members (JSON list of
        {person_id, row, relation, name, sex, age}), flags (JSON list of household review
        reasons), restricted_members. Built from the masked persons, so a restricted head's
        name and a restricted member's name and age are <NA>/null unless include_restricted.
        Members of one household: `run.persons().query("household_id == @hid")`.
        """
        return self.query("SELECT * FROM households ORDER BY household_id", include_restricted)

    def cells(
        self, status: str | Iterable[str] | None = None, include_restricted: bool = False
    ) -> pd.DataFrame:
        """Every cell of the run (current text after review), ordered by page, row and column;
        with `status` ('accepted', 'needs_review', 'corrected', 'empty', 'illegible', or a list
        of them) only those. Columns as `census query`'s `cells` view: cell_id, page_id, row,
        col, field, text, value (JSON), confidence, status (categorical), reasons (JSON list),
        x0..y1, engine, model, machine_text, machine_status, value_from, machine_confidence (the
        recogniser's own, before a run's recalibration: `census recalibrate`). Restricted persons'
        masked cells (and unmapped columns of their rows) have text, value and machine_text <NA>.
        """
        wanted = [status] if isinstance(status, str) else list(status) if status is not None else []
        unknown = [name for name in wanted if name not in CELL_STATUSES]
        if unknown:
            raise UsageError(f"unknown cell status {unknown[0]!r}: choose from {', '.join(CELL_STATUSES)}")
        where = f" WHERE status IN ({', '.join(repr(name) for name in wanted)})" if wanted else ""
        frame = self.query(f"SELECT * FROM cells{where} ORDER BY page_id, row, col", include_restricted)
        return frame.astype({"status": _categories(CELL_STATUSES, frame["status"])})

    def query(self, sql: str, include_restricted: bool = False) -> pd.DataFrame:
        """Read-only SQL (DuckDB) over the views persons, households, cells, pages and
        corrections, exactly as `census query RUN_DIR SQL` runs it (only SELECT/EXPLAIN; no
        other file can be read); the result typed for pandas as in the module help.
        Raises `UsageError` on an SQL error or a statement that is not a query."""
        return self._frame(query.query_arrow(self.run_dir, sql, include_restricted))

    # --- search and images -------------------------------------------------------------------

    def search(
        self,
        name: str,
        born: tuple[int, int] | int | str | None = None,
        place: str | None = None,
        limit: int = 10,
        include_restricted: bool = False,
    ) -> pd.DataFrame:
        """Fuzzy, phonetic person search (`census search`), best first.

        `name` as written ('Josep Puig i Serra'; spelling variants, swapped surnames and
        misreadings are found); `born` a year, a (first, last) range or '1880-1890' (a year's
        slack either side; persons with no known birth year stay in, ranked lower); `place` a
        birth place. Columns: person_id, page_id, row, name, birth_year, birth_place, score
        (1.0 = every word matched), confidence. Restricted persons are left out unless
        include_restricted; `run.crop(hit_person_id)` shows a hit's row.
        """
        from pipeline.dataset.search import SearchQuery, parse_born
        from pipeline.dataset.search import search as run_search

        if isinstance(born, str):
            born = parse_born(born)
        elif isinstance(born, int):
            born = (born, born)
        hits = run_search(
            self.run_dir,
            SearchQuery(
                text=name, born=born, place=place, limit=limit, include_restricted=include_restricted
            ),
            crops=False,
        )
        records = [hit.model_dump(include=set(SEARCH_SCHEMA.names)) for hit in hits]
        return self._frame(pa.Table.from_pylist(records, schema=SEARCH_SCHEMA))

    def crop(self, person_id: str) -> Image.Image:
        """The image of the person's register row (a PIL image cut from the page, grey), as the
        browse view shows it. Refused with `UsageError` for a restricted person (their
        handwriting shows what the masking hides), an unknown person_id or a run without page
        images."""
        from PIL import Image

        from pipeline.dataset.search import crop_image

        found = query.query_arrow(
            self.run_dir,
            "SELECT restricted, page_id, x0, y0, x1, y1 FROM persons WHERE person_id = "
            + "'" + person_id.replace("'", "''") + "'",
        ).to_pylist()
        if not found:
            raise UsageError(f"no person {person_id!r} in {self.run_dir}")
        person = found[0]
        if person["restricted"]:
            raise UsageError(
                f"person {person_id} is under the embargo ({self.embargo}): no image of their row"
            )
        box = (person["x0"], person["y0"], person["x1"], person["y1"])
        path = crop_image(self.run_dir, person["page_id"], box, f"{person_id}-row")
        if path is None:
            raise UsageError(f"no page image for {person_id} (RUN_DIR/images/{person['page_id']}.jpg)")
        with Image.open(path) as image:
            return image.copy()

    # --- typing -------------------------------------------------------------------------------

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        """Arrow -> pandas with nullable dtypes, vocabulary fields as categoricals, ISO dates as datetimes."""
        import pandas as pd

        nullable = {
            pa.int8(): pd.Int8Dtype(),
            pa.int16(): pd.Int16Dtype(),
            pa.int32(): pd.Int32Dtype(),
            pa.int64(): pd.Int64Dtype(),
            pa.bool_(): pd.BooleanDtype(),
            pa.float32(): pd.Float32Dtype(),
            pa.float64(): pd.Float64Dtype(),
            pa.string(): pd.StringDtype(),
            pa.large_string(): pd.StringDtype(),
        }
        frame = table.to_pandas(types_mapper=nullable.get)
        for column in self.template.columns:
            if column.key not in frame.columns or not isinstance(frame[column.key].dtype, pd.StringDtype):
                continue
            values = frame[column.key]
            if column.type in VOCABULARY_TYPES and column.vocabulary:
                frame[column.key] = values.astype(_categories(list(column.vocabulary), values))
            elif column.type == "date" and (dates := _datetimes(values)) is not None:
                precision = values.str.len().map(DATE_PRECISION, na_action="ignore")
                frame[column.key] = dates
                frame.insert(
                    frame.columns.get_loc(column.key) + 1,
                    f"{column.key}_precision",
                    precision.astype(pd.CategoricalDtype(list(DATE_PRECISION.values()))),
                )
        return frame


def _datetimes(values: Any) -> Any:
    """The ISO date texts (YYYY, YYYY-MM or YYYY-MM-DD) as datetimes; None (the text stays) when
    a value is not one, e.g. a computed column of a query that happens to share the field's name."""
    import pandas as pd

    if not values.dropna().map(lambda text: bool(_ISO_DATE.fullmatch(text))).all():
        return None
    try:
        return pd.to_datetime(values, format="ISO8601")
    except (ValueError, OverflowError):  # an impossible date such as 1890-02-30
        return None


def _categories(known: Iterable[str], values: Any) -> Any:
    """A categorical dtype with the `known` categories first, then any other value present."""
    import pandas as pd

    known = list(known)
    extra = sorted(set(values.dropna()) - set(known))
    return pd.CategoricalDtype([*known, *extra])
