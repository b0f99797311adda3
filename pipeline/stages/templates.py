"""Register templates: which columns a register type has, how their headers are spelled,
what each field holds, and the rules its values must satisfy. YAML, validated with pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from pipeline.errors import UsageError

FieldType = Literal[
    "name", "relation", "sex", "age", "date", "place", "marital_status",
    "occupation", "literacy", "address", "number", "text",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"
# Columns a template may declare: each becomes a persons column (and a browse/export column)
# beside a dozen fixed ones, far below SQLite's 2000-column limit; real registers have ~20.
MAX_COLUMNS = 200


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class ColumnSpec(BaseModel):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # becomes a SQL column name
    type: FieldType
    label: str  # human-readable column name, for reviewers and the codebook
    headers: list[str] = Field(min_length=1)  # printed header variants (ca/es/fr)
    vocabulary: dict[str, list[str]] = Field(default_factory=dict)  # canonical value -> variants
    lexicon: str | None = None  # name of a lexicon in pipeline/lexicons for fuzzy snapping
    key_field: bool = False  # names, ages...: reviewed first
    allow_ditto: bool = True
    # Printed on some forms of the register only (an order number, literacy split in two): synthetic
    # pages leave it out unless asked, and a column is mapped to it by position only as a last resort.
    optional: bool = False

    @field_validator("lexicon")
    @classmethod
    def _known_lexicon(cls, lexicon: str | None) -> str | None:
        # A template is a user file: its lexicon must name one of ours, never a path.
        from pipeline.lexicons import lexicon_names

        if lexicon is not None and lexicon not in lexicon_names():
            raise ValueError(f"unknown lexicon {lexicon!r}; known: {', '.join(lexicon_names())}")
        return lexicon


EXTRA_PREFIX = "extra_"  # the key of a printed column the template does not know: extra_<its header>


def extra_column(key: str, header: str) -> ColumnSpec:
    """A printed column the template does not know, kept as text under its own key
    (pipeline.stages.columns names it from its header)."""
    return ColumnSpec(key=key, type="text", label=header or key, headers=[header or key])


class Template(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str
    language: Literal["ca", "es", "fr"]
    register_year: int | None = Field(default=None, ge=1700, le=2100)  # for age/birth checks
    review_threshold: float = Field(default=0.9, gt=0, le=1)  # min confidence to auto-accept
    columns: list[ColumnSpec] = Field(min_length=1, max_length=MAX_COLUMNS)
    rules: list[Literal["age_matches_birth_date", "head_first_in_household", "child_younger_than_head",
                        "sex_matches_name"]] = Field(default_factory=list)

    @field_validator("columns")
    @classmethod
    def _unique_keys(cls, columns: list[ColumnSpec]) -> list[ColumnSpec]:
        keys = [column.key for column in columns]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate column keys: {keys}")
        return columns

    def column(self, key: str) -> ColumnSpec:
        return next(column for column in self.columns if column.key == key)


def available_templates() -> dict[str, Path]:
    return {path.stem: path for path in sorted(TEMPLATES_DIR.glob("*.yaml"))}


def load_template(name_or_path: str | Path) -> Template:
    """Load a shipped template by name, or a YAML file by path; raise UsageError if invalid."""
    path = available_templates().get(str(name_or_path), Path(name_or_path))
    if not path.is_file():
        raise UsageError(
            f"template {name_or_path!r} not found; shipped templates: {', '.join(available_templates())}")
    try:
        loader = UniqueKeyLoader(path.read_text(encoding="utf-8"))  # what yaml.load does, with our loader
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
        return Template.model_validate(data)
    except yaml.MarkedYAMLError as error:  # duplicate key, bad syntax: name the line
        mark = error.problem_mark
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        raise UsageError(f"invalid template {where}: {error.problem or error.context}") from error
    # PyYAML's safe constructor raises ValueError for bad dates/numbers (e.g. 2020-13-45) and
    # RecursionError for absurd nesting: both are invalid templates, not crashes.
    except (yaml.YAMLError, ValidationError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise UsageError(f"invalid template {path}: {error}") from error
