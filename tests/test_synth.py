"""Synthetic register pages: fonts, handwriting renderer, coherent households, exact ground truth,
output formats and the `census synth` command."""

import math
from collections import Counter
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import UsageError
from pipeline.pagexml import read_json_groundtruth, read_table_groundtruth
from pipeline.synth import DITTO_MARKS, generate_pages, handwriting_fonts, print_fonts, render_page, render_text
from pipeline.synth.fonts import REQUIRED_CHARS, font_draws
from pipeline.synth.households import age_at, make_household, make_setting
from pipeline.stages.templates import load_template

TEMPLATE = load_template("padro-catala-1930")


@pytest.fixture(scope="module")
def pages():
    """A few rendered pages (image, ground truth), both templates."""
    spanish = load_template("padron-espanol-1930")
    return [render_page(TEMPLATE, seed) for seed in range(4)] + [render_page(spanish, 100)]


def test_handwriting_fonts_draw_catalan_letters() -> None:
    fonts = handwriting_fonts()
    assert len(fonts) >= 4
    assert all(font_draws(font) for font in fonts)
    assert print_fonts() and print_fonts()[0].name.startswith("DejaVu")


def test_font_check_rejects_missing_glyphs() -> None:
    dejavu = print_fonts()[0]
    assert font_draws(dejavu, REQUIRED_CHARS)
    assert not font_draws(dejavu, "\u4e2d")  # DejaVu has no CJK: it renders .notdef
    assert font_draws(dejavu, "id. 〃")  # no font has U+3003, render_text strokes it itself
    assert not font_draws(handwriting_fonts()[0], "\u4e2d")  # CJK: the box, not a glyph


def test_render_text_looks_like_ink_on_paper() -> None:
    font = handwriting_fonts()[0]
    image = render_text("Marcel·lí Puig i Serra", font, 40, np.random.default_rng(1))
    assert image.dtype == np.uint8 and image.ndim == 2
    assert image.min() < 100 and np.median(image) > 200
    assert 15 <= image.shape[0] <= 80 and image.shape[1] > 5 * image.shape[0]
    again = render_text("Marcel·lí Puig i Serra", font, 40, np.random.default_rng(1))
    other = render_text("Marcel·lí Puig i Serra", font, 40, np.random.default_rng(2))
    assert np.array_equal(image, again) and not np.array_equal(image, other)


def test_render_text_draws_accents_and_ditto_strokes() -> None:
    font = handwriting_fonts()[0]
    fixed = {"slant": 0.0, "ink": 0, "stroke": 0}
    for plain, accented in [("u", "ü"), ("n", "ñ"), ("e", "è"), ("c", "ç")]:
        bare = render_text(plain, font, 60, np.random.default_rng(0), **fixed)
        marked = render_text(accented, font, 60, np.random.default_rng(0), **fixed)
        assert (marked < 128).sum() > (bare < 128).sum(), accented
    ditto = render_text("〃", font, 40, np.random.default_rng(0))
    assert (ditto < 128).sum() > 20


def test_page_is_deterministic_and_fast() -> None:
    start = time.perf_counter()
    first_image, first_truth = render_page(TEMPLATE, 42)
    elapsed = time.perf_counter() - start
    second_image, second_truth = render_page(TEMPLATE, 42)
    assert np.array_equal(first_image, second_image)
    assert first_truth.model_dump() == second_truth.model_dump()
    assert elapsed < 4.0, f"one page took {elapsed:.2f} s"
    assert not np.array_equal(first_image, render_page(TEMPLATE, 43)[0])


def test_grid_and_skew_are_exact(pages) -> None:
    for image, truth in pages:
        assert image.shape == (truth.height, truth.width)
        matrix = np.asarray(truth.skew_matrix)
        rows, cols = truth.grid.row_bounds, truth.grid.col_bounds
        assert len(rows) == truth.n_rows + truth.header_rows + 1 and len(cols) == truth.n_cols + 1
        cell = truth.cell(2, 3)
        corners = np.array([[cols[3], rows[3], 1], [cols[4], rows[3], 1], [cols[4], rows[4], 1], [cols[3], rows[4], 1]])
        assert np.abs(corners @ matrix.T - np.asarray(cell.polygon)).max() <= 1
        (x0, y0), (x1, y1) = truth.table_polygon[:2]
        top_edge_angle = math.degrees(math.atan2(-(y1 - y0), x1 - x0))  # image y points down
        assert abs(top_edge_angle - truth.skew_deg) < 0.05
        assert len(truth.cells) == truth.n_rows * truth.n_cols


def test_written_cells_have_ink_and_empty_cells_do_not(pages) -> None:
    for image, truth in pages:
        for cell in truth.cells:
            if cell.text:
                xs, ys = zip(*cell.line_polygon)
                patch = image[max(0, min(ys)):max(ys), max(0, min(xs)):max(xs)]
                assert patch.min() < np.median(patch) - 50, cell  # paper noise alone stays within ~20
            else:
                assert cell.line_polygon is None and cell.value is None


def test_values_are_typed_like_a_parser_would(pages) -> None:
    for _, truth in pages:
        template = load_template(truth.template)
        for cell in truth.cells:
            column = template.column(cell.field)
            if cell.value is None:
                continue
            if column.type in ("age", "number"):
                assert isinstance(cell.value, int) and cell.value >= 0
            elif column.type == "date":
                date.fromisoformat(cell.value)
            elif column.vocabulary:
                assert cell.value in column.vocabulary
                if not cell.ditto:
                    assert cell.text.lower() in {v.lower() for v in column.vocabulary[cell.value]}, cell
            else:
                assert isinstance(cell.value, str) and cell.value


def test_ditto_marks_resolve_to_the_row_above(pages) -> None:
    dittos = 0
    for _, truth in pages:
        for cell in truth.cells:
            if cell.ditto:
                dittos += 1
                assert cell.text in DITTO_MARKS
                assert cell.value == truth.cell(cell.row - 1, cell.col).value is not None
            else:
                assert cell.text not in DITTO_MARKS
    assert dittos >= 5


def _surnames(name: str) -> tuple[str, str]:
    words = [word for word in name.split() if word != "i"]
    return words[-2], words[-1]


def test_households_are_coherent(pages) -> None:
    for _, truth in pages:
        households: dict[str, list[dict]] = {}
        for row in range(truth.n_rows):
            values = {c.field: c.value for c in truth.cells if c.row == row}
            if truth.rows[row].household_id:
                households.setdefault(truth.rows[row].household_id, []).append(values)
            else:
                assert all(value is None for value in values.values())
            if values["age"] is not None and values["birth_date"] is not None:
                born = date.fromisoformat(values["birth_date"])
                assert age_at(born, truth.reference_date) == values["age"]
        for members in households.values():
            assert members[0]["relation"] == "head"
            assert len({m["address"] for m in members if m["address"]}) <= 1
            head, spouse = members[0], next((m for m in members if m["relation"] == "spouse"), None)
            for child in (m for m in members if m["relation"] in ("son", "daughter")):
                if child["age"] is not None and head["age"] is not None:
                    assert child["age"] < head["age"]
                if spouse and head["sex"] == "M":
                    assert _surnames(child["name"]) == (_surnames(head["name"])[0], _surnames(spouse["name"])[0])



def test_style_overrides_force_missing_rules_font_and_skew() -> None:
    flat = {"skew_deg": 0.0, "cross_rate": 0.0, "broken_rules": False, "faint_rules": False}

    def darkness_on_inner_row_rules(missing: bool) -> float:
        image, truth = render_page(TEMPLATE, 5, overrides={**flat, "missing_row_rules": missing})
        rows, cols = truth.grid.row_bounds, truth.grid.col_bounds
        lines = [image[int(y) - 1:int(y) + 2, int(cols[0]) + 5:int(cols[-1]) - 5].min(axis=0).mean()
                 for y in rows[2:-1]]
        return float(np.median(lines))

    ruled, bare = darkness_on_inner_row_rules(False), darkness_on_inner_row_rules(True)
    assert ruled < 150 < bare, (ruled, bare)
    _, truth = render_page(TEMPLATE, 5, overrides={"hand_font": "Kristi.ttf", "skew_deg": -4.5})
    assert truth.render["hand_font"] == "Kristi.ttf" and truth.skew_deg == -4.5
    with pytest.raises(UsageError):
        render_page(TEMPLATE, 5, overrides={"no_such_style": 1})
    with pytest.raises(UsageError):
        render_page(TEMPLATE, 5, overrides={"hand_font": "Comic Sans"})


def test_forms_print_an_order_number_split_literacy_and_a_column_the_template_does_not_know() -> None:
    plain, plain_truth = render_page(TEMPLATE, 5)
    assert [c.field for c in plain_truth.columns] == [c.key for c in TEMPLATE.columns if not c.optional]
    image, truth = render_page(TEMPLATE, 5, overrides={"order_number": True, "split_literacy": True,
                                                       "extra_header": "Observacions"})
    fields = [column.field for column in truth.columns]
    assert fields[0] == "num" and "literacy" not in fields
    assert fields.index("can_write") == fields.index("can_read") + 1
    assert truth.columns[fields.index("extra_observacions")].header == "Observacions"
    assert image.shape[1] == plain.shape[1] and not np.array_equal(image, plain)
    cells = {(cell.row, cell.field): cell for cell in truth.cells}
    filled = [row for row in range(truth.n_rows) if cells[(row, "name")].text]
    numbers = [cells[(row, "num")].value for row in filled]
    assert numbers == list(range(numbers[0], numbers[0] + len(filled)))
    assert all(cells[(row, "num")].text == str(cells[(row, "num")].value) for row in filled)
    for row in filled:  # one who writes reads; each is what the template's vocabulary makes of its text
        read, write = cells[(row, "can_read")], cells[(row, "can_write")]
        assert not (write.value == "yes" and read.value == "no")
        assert read.value in (None, "yes", "no") and (read.value is None) == (read.text == "")
    remarks = [cells[(row, "extra_observacions")].text for row in filled]
    assert any(remarks) and all(text == cells[(row, "extra_observacions")].value or not text
                                for row, text in zip(filled, remarks))


def test_a_two_level_header_prints_group_titles_over_sub_columns() -> None:
    """The header band grows; the rule between two sub-columns starts under their group's title, the others
    run from the table's top; a kind of grouped header that does not exist is refused."""
    flat = {"skew_deg": 0.0, "broken_rules": False, "faint_rules": False}
    _, plain = render_page(TEMPLATE, 5, overrides=flat)
    image, truth = render_page(TEMPLATE, 5, overrides={**flat, "grouped_header": "full"})
    assert truth.render["header_height"] > plain.render["header_height"] and image.shape[0] % 25 == 0
    top, header_end = truth.grid.row_bounds[:2]
    title_band = slice(int(top) + 3, int(top + 0.4 * (header_end - top)) - 3)
    ruled_through = [image[title_band, int(x) - 1: int(x) + 2].min(axis=1).max() < 150 for x in truth.grid.col_bounds]
    assert ruled_through[0] and ruled_through[-1] and 1 <= ruled_through.count(False) <= 2, ruled_through
    with pytest.raises(UsageError, match="grouped_header"):
        render_page(TEMPLATE, 5, overrides={"grouped_header": "three-level"})


def test_form_variants_differ_from_page_to_page() -> None:
    forms = {tuple(c.field for c in render_page(TEMPLATE, seed, overrides={"form_variants": True})[1].columns)
             for seed in range(6)}
    assert len(forms) > 2
    assert any("num" in form for form in forms) and any("num" not in form for form in forms)
    with pytest.raises(UsageError):
        render_page(TEMPLATE, 5, overrides={"no_such_form": True})


def test_grid_lines_follow_the_skew(pages) -> None:
    for _, truth in pages:
        matrix = np.asarray(truth.skew_matrix)
        for y, line in zip(truth.grid.row_bounds, truth.grid.row_lines):
            start = matrix @ np.array([truth.grid.col_bounds[0], y, 1.0])
            assert np.abs(start - np.asarray(line[0])).max() <= 1
        assert len(truth.grid.col_lines) == truth.n_cols + 1


def test_kin_take_the_right_surnames_and_ages() -> None:
    rng = np.random.default_rng(7)
    setting = make_setting(rng, TEMPLATE)
    seen = Counter()
    for _ in range(400):
        head, *others = make_household(rng, setting)
        head_age = age_at(head.birth_date, setting.reference_date)
        assert head.relation == "head" and all(p.household_id == head.household_id for p in others)
        for person in others:
            seen[person.relation] += 1
            age = age_at(person.birth_date, setting.reference_date)
            if person.relation in ("brother", "sister"):
                assert (person.surname1, person.surname2) == (head.surname1, head.surname2)
            elif person.relation in ("father", "mother"):
                assert age >= head_age + 22 and person.marital_status == "widowed"
                assert person.surname1 == (head.surname1 if person.relation == "father" else head.surname2)
            elif person.relation in ("grandson", "granddaughter"):
                assert person.surname1 == head.surname1 and age < head_age - 30
            elif person.relation in ("son", "daughter"):
                assert age < head_age and 0 <= age
    assert {"spouse", "son", "daughter", "father", "mother", "brother", "sister", "servant", "lodger",
            "grandson", "granddaughter", "nephew", "niece"} <= set(seen)


@pytest.mark.parametrize("skew", [-5.0, 5.0])
def test_turned_table_stays_inside_the_image(skew: float) -> None:
    for seed in (28, 30, 41):
        _, truth = render_page(TEMPLATE, seed, overrides={"skew_deg": skew})
        xs, ys = zip(*truth.table_polygon)
        assert min(xs) >= 18 and min(ys) >= 18 and max(xs) <= truth.width - 18 and max(ys) <= truth.height - 18
        assert truth.width % 25 == 0 and truth.height % 25 == 0


def test_skew_range_and_zero_skew() -> None:
    skews = [render_page(TEMPLATE, seed, skew_max_deg=5.0)[1].skew_deg for seed in range(6)]
    assert all(abs(skew) <= 5.0 for skew in skews) and max(map(abs, skews)) > 1.0
    assert render_page(TEMPLATE, 1, skew_max_deg=0.0)[1].skew_deg == 0.0


def test_generate_png_and_multipage_tiff_pdf(tmp_path: Path) -> None:
    [png] = generate_pages(tmp_path / "png", 1, seed=9)
    truth = read_json_groundtruth(png.with_suffix(".json"))
    assert truth.image == png.name and read_table_groundtruth(png.with_suffix(".xml")).data_rows == truth.n_rows
    assert Image.open(png).size == (truth.width, truth.height)

    [tif] = generate_pages(tmp_path / "tif", 2, seed=9, fmt="tiff", pages_per_file=2)
    with Image.open(tif) as image:
        assert image.n_frames == 2
        for k in range(2):
            image.seek(k)
            assert image.size == (read_json_groundtruth(tif.with_name(f"{tif.stem}.p{k}.json")).width,
                                  read_json_groundtruth(tif.with_name(f"{tif.stem}.p{k}.json")).height)
    first = read_json_groundtruth(tif.with_name(f"{tif.stem}.p0.json"))
    assert first.model_dump(exclude={"image"}) == truth.model_dump(exclude={"image"})  # same seed, same page

    [pdf] = generate_pages(tmp_path / "pdf", 2, seed=9, fmt="pdf", pages_per_file=2)
    from pipeline.stages.ingest import load_page

    for k in range(2):  # ingest renders the PDF at exactly the ground truth's pixel size
        info, grey = load_page(pdf, k)
        gt = read_json_groundtruth(pdf.with_name(f"{pdf.stem}.p{k}.json"))
        assert (info.width, info.height) == (gt.width, gt.height) == (grey.shape[1], grey.shape[0])

    [single] = generate_pages(tmp_path / "one", 1, seed=9, fmt="pdf")  # one page: no .p0 suffix
    assert single.with_suffix(".xml").exists() and not single.with_name(f"{single.stem}.p0.xml").exists()


@pytest.mark.parametrize("kwargs", [{"fmt": "bmp"}, {"fmt": "png", "pages_per_file": 2}, {"skew_max_deg": -1},
                                    {"template": "no-such-template"}])
def test_bad_arguments_are_usage_errors(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(UsageError):
        generate_pages(tmp_path, 1, seed=0, **kwargs)


def test_cli_synth(tmp_path: Path) -> None:
    census = [sys.executable, "-m", "pipeline.cli"]
    done = subprocess.run([*census, "synth", "--pages", "1", "--out", str(tmp_path), "--seed", "4",
                           "--format", "jpg", "--skew-max", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    image = Path(done.stdout.strip())
    assert image.suffix == ".jpg" and image.with_suffix(".xml").exists()
    assert abs(read_json_groundtruth(image.with_suffix(".json")).skew_deg) <= 1
    styled = subprocess.run([*census, "synth", "--pages", "1", "--out", str(tmp_path / "s"), "--style",
                             "missing_row_rules=true", "--style", "skew_deg=2.5"],
                            capture_output=True, text=True, timeout=120)
    assert styled.returncode == 0, styled.stderr
    truth = read_json_groundtruth(Path(styled.stdout.strip()).with_suffix(".json"))
    assert truth.render["missing_row_rules"] is True and truth.skew_deg == 2.5
    bad = subprocess.run([*census, "synth", "--pages", "1", "--out", str(tmp_path), "--format", "bmp"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "format" in bad.stderr


def test_missing_fonts_is_a_usage_error(monkeypatch) -> None:
    import pipeline.synth.page as page

    monkeypatch.setattr(page, "handwriting_fonts", lambda: [])  # a machine without the font packages
    with pytest.raises(UsageError, match="fonts"):
        render_page(TEMPLATE, 0)


def test_a_second_clerk_takes_over_at_a_household_start() -> None:
    _, truth = render_page(TEMPLATE, 28)  # a page finished by another clerk
    first, second, row = (truth.render[k] for k in ("hand_font", "second_hand_font", "second_hand_from_row"))
    assert second and second != first and 0 < row < truth.n_rows
