"""Column mapping with real tesseract on synthetic register pages (printed header variants)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stages.columns import extra_key, header_score, map_columns, normalise_header
from pipeline.stages.layout import detect_grid, header_box
from pipeline.stages.preprocess import preprocess
from pipeline.synth.page import render_page
from pipeline.stages.templates import Template, load_template

TEMPLATE = load_template("padro-catala-1930")


@pytest.fixture(scope="module")
def variant_page() -> tuple[np.ndarray, object, list[str], list[str]]:
    """Seed 8 prints random header variants (Catalan, Spanish, French spellings)."""
    image, truth = render_page(TEMPLATE, 8, skew_max_deg=3.0)
    _, processed = preprocess(image)
    grid = detect_grid(processed)
    fields = [column.field for column in truth.columns]
    printed = [column.header for column in truth.columns]
    return processed, grid, fields, printed


def test_headers_read_and_mapped(variant_page) -> None:
    processed, grid, fields, printed = variant_page
    assert any(header != column.headers[0] for header, column in zip(printed, TEMPLATE.columns))
    mapping = map_columns(processed, grid, TEMPLATE)
    assert [mapping.fields[col] for col in range(len(fields))] == fields
    assert set(mapping.method.values()) == {"header"}
    assert all(score >= 0.6 for score in mapping.scores.values())
    assert normalise_header(mapping.headers[0]) == normalise_header(printed[0])


def test_unreadable_headers_fall_back_to_position(variant_page) -> None:
    processed, grid, fields, _ = variant_page
    smudged = processed.copy()
    for col in (2, 5):  # ink blots over two headers
        box = header_box(grid, col)
        smudged[box.y0 + 4: box.y1 - 4, box.x0 + 4: box.x1 - 4] = 255
    mapping = map_columns(smudged, grid, TEMPLATE)
    assert [mapping.fields[col] for col in range(len(fields))] == fields
    assert mapping.method[2] == mapping.method[5] == "position"
    assert mapping.method[0] == "header"


def test_column_missing_from_the_template_is_kept_under_its_own_name(variant_page) -> None:
    processed, grid, fields, printed = variant_page
    data = TEMPLATE.model_dump()
    shorter = Template.model_validate({**data, "columns": [c for c in data["columns"] if c["key"] != "name"]})
    mapping = map_columns(processed, grid, shorter)
    # the name column has no template column any more: neither dropped nor put in the free `num` slot
    assert mapping.fields[0] == extra_key(printed[0], 0, set()) == "extra_nom_i_cognoms"
    assert mapping.method[0] == "extra"
    assert [mapping.fields[col] for col in range(1, len(fields))] == fields[1:]


FORMS = [("padro-catala-1930", 8, "Observacions"), ("padron-espanol-1930", 12, "Cédula personal")]


@pytest.mark.parametrize(("template_name", "seed", "extra"), FORMS)
def test_order_number_split_literacy_and_an_unknown_column(template_name: str, seed: int, extra: str) -> None:
    template = load_template(template_name)
    image, truth = render_page(template, seed, skew_max_deg=3.0, overrides={
        "order_number": True, "split_literacy": True, "extra_header": extra})
    _, processed = preprocess(image)
    grid = detect_grid(processed, expected_columns=len(template.columns))
    fields = [column.field for column in truth.columns]
    assert fields[0] == "num" and {"can_read", "can_write", extra_key(extra, 0, set())} <= set(fields)
    assert "literacy" not in fields
    mapping = map_columns(processed, grid, template)
    assert [mapping.fields[col] for col in range(len(fields))] == fields
    assert {mapping.method[fields.index(key)] for key in ("num", "can_read", "can_write")} == {"header"}


def test_unreadable_header_of_a_split_form_falls_back_to_position() -> None:
    image, truth = render_page(TEMPLATE, 8, skew_max_deg=3.0, overrides={"split_literacy": True})
    _, processed = preprocess(image)
    grid = detect_grid(processed, expected_columns=len(TEMPLATE.columns))
    fields = [column.field for column in truth.columns]
    col = fields.index("can_write")
    box = header_box(grid, col)
    processed[box.y0 + 4: box.y1 - 4, box.x0 + 4: box.x1 - 4] = 255
    mapping = map_columns(processed, grid, TEMPLATE)
    assert mapping.fields[col] == "can_write" and mapping.method[col] == "position"
    assert [mapping.fields[c] for c in range(len(fields))] == fields


def test_extra_keys_are_stable_slugs_unique_on_the_page() -> None:
    assert extra_key("Observaciones", 3, set()) == "extra_observaciones"
    assert extra_key("Cèdula  per-\nsonal", 3, set()) == "extra_cedula_personal"
    assert extra_key("", 3, set()) == "extra_col4"
    assert extra_key("Observaciones", 5, {"extra_observaciones"}) == "extra_observaciones_2"
    assert len(extra_key("Observacions " * 10, 0, set())) <= 40


def test_header_score_tolerates_ocr_slips_but_separates_columns() -> None:
    names = TEMPLATE.column("name").headers
    assert header_score("Nom i cognorns", names) > 0.85
    assert header_score("NOMBRE Y APELLIDOS", names) == 1.0
    assert header_score("Sexe", TEMPLATE.column("age").headers) < 0.5
    assert header_score("", names) == 0.0
    assert normalise_header("Profes-\nsió") == "professio"
