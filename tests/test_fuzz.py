"""Property-based fuzzing (hypothesis) of the two parsers that take untrusted files: register
templates (YAML) and scans (ingest). Whatever the bytes, the outcome must be a defined one:
a valid result, or the project's own error (UsageError for a template, PageError for a
scan) — never another exception, which would crash a batch instead of failing one page.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.stages import ingest
from pipeline.errors import PageError, UsageError
from pipeline.stages.templates import Template, available_templates, load_template

FUZZ = settings(
    max_examples=int(os.environ.get("CENSUS_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def load_template_text(text: str | bytes) -> Template:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        return load_template(path)


def shipped_template_data() -> dict:
    return yaml.safe_load(next(iter(available_templates().values())).read_text(encoding="utf-8"))


# --- templates ------------------------------------------------------------------------------

YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["2020-13-45", "!!binary AAAA", "0x1F", "~"]),
)


@FUZZ
@given(st.text(max_size=400))
def test_any_text_is_a_template_or_a_usage_error(text: str) -> None:
    try:
        template = load_template_text(text)
    except UsageError:
        return
    assert template.columns


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_are_a_template_or_a_usage_error(data: bytes) -> None:
    try:
        load_template_text(data)
    except UsageError:
        pass


@pytest.mark.parametrize(
    "document",
    [
        "a: !!timestamp 2020-13-45",
        "register_year: 1930-02-30",
        "a: !!int abc",
        "a: !!float x",
        "[" * 3000,
        "a: &x [*x]",
        "!!python/none ''",
    ],
)
def test_yaml_constructor_edge_cases_are_usage_errors(document: str) -> None:
    """Values PyYAML's safe constructor rejects with ValueError/RecursionError, not YAMLError."""
    with pytest.raises(UsageError):
        load_template_text(document)


@st.composite
def mutated_templates(draw: st.DrawFn) -> dict:
    """A shipped template with one field of one column (or the top level) replaced by junk."""
    data = shipped_template_data()
    target = draw(st.sampled_from(["top", "column"]))
    holder = data if target == "top" else draw(st.sampled_from(data["columns"]))
    key = draw(st.sampled_from(sorted(holder)) | st.text(max_size=10))
    holder[key] = draw(
        YAML_SCALARS
        | st.lists(YAML_SCALARS, max_size=3)
        | st.dictionaries(st.text(max_size=5), YAML_SCALARS, max_size=3)
    )
    return data


@FUZZ
@given(mutated_templates())
def test_mutated_templates_validate_or_fail_cleanly(data: dict) -> None:
    try:
        template = load_template_text(yaml.safe_dump(data, allow_unicode=True))
    except UsageError:
        return
    # A template that loads is consistent: unique keys, a threshold in (0, 1], and it round-trips.
    keys = [column.key for column in template.columns]
    assert len(keys) == len(set(keys))
    assert 0 < template.review_threshold <= 1
    assert Template.model_validate_json(template.model_dump_json()) == template


# --- ingest ---------------------------------------------------------------------------------


def seed_files() -> dict[str, bytes]:
    """Small valid files of each accepted format, to be cut and corrupted."""
    rng = np.random.default_rng(7)
    pixels = Image.fromarray(rng.integers(0, 255, (240, 260), dtype=np.uint8))
    files = {}
    for name, options in {
        "png": {},
        "jpeg": {"quality": 80},
        "tiff": {"compression": "tiff_lzw"},
        "pdf": {"resolution": 100.0},
    }.items():
        buffer = io.BytesIO()
        pixels.save(buffer, format=name.upper(), **options)
        files[name] = buffer.getvalue()
    return files


SEEDS = seed_files()


def outcome_of(data: bytes, suffix: str = ".img") -> str:
    """'ok' or the PageError reason of probing then loading every page; other errors propagate."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed{suffix}"
        path.write_bytes(data)
        try:
            info = ingest.probe(path)
            for index in range(min(info.n_pages, 3)):
                page, grey = ingest.load_page(path, index)
                assert grey.dtype == np.uint8 and grey.ndim == 2
                assert (page.height, page.width) == grey.shape
        except PageError as error:
            assert error.reason and error.reason == error.reason.strip()
            return error.reason
    return "ok"


def test_seed_files_load() -> None:
    assert {kind: outcome_of(data) for kind, data in SEEDS.items()} == dict.fromkeys(SEEDS, "ok")


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_truncated_files_fail_as_pages(kind: str, data: st.DataObject) -> None:
    original = SEEDS[kind]
    cut = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    outcome_of(original[:cut])


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_corrupted_files_fail_as_pages(kind: str, data: st.DataObject) -> None:
    corrupted = bytearray(SEEDS[kind])
    # Headers hold the interesting structure: bias flips towards the first kilobyte.
    positions = data.draw(
        st.lists(
            st.integers(0, min(len(corrupted), 1024) - 1) | st.integers(0, len(corrupted) - 1),
            min_size=1,
            max_size=8,
        )
    )
    for position in positions:
        corrupted[position] = data.draw(st.integers(0, 255))
    outcome_of(bytes(corrupted))


@FUZZ
@given(
    st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"%PDF-"]),
    st.binary(max_size=600),
    st.sampled_from([".png", ".jpg", ".tif", ".pdf", ".txt"]),
)
def test_magic_then_junk_fails_as_pages(magic: bytes, junk: bytes, suffix: str) -> None:
    outcome_of(magic + junk, suffix)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_fail_as_pages(junk: bytes) -> None:
    image_magics = (b"\xff\xd8\xff", b"\x89PNG", b"II", b"MM", b"%PDF", b"GIF8", b"BM", b"RIFF")
    assume(not any(junk.startswith(magic) for magic in image_magics))  # those are truncated images
    assert outcome_of(junk) in {"empty-file", "not-an-image"}
