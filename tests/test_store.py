"""The store: idempotent page writes, and reviewers' corrections surviving a re-recognised page."""

from __future__ import annotations

from pipeline.run import store
from pipeline.stages import fields
from pipeline.models import BBox, Cell, ColumnMapping, PageInfo, PageResult
from pipeline.stages.templates import load_template

TEMPLATE = load_template("padro-catala-1930")


def read_page(readings: list[tuple[int, int, str, str, str]]) -> PageResult:
    """Page p-p0 as the fields stage hands it over: one (row, col, field, text, status) per read cell."""
    cells = [Cell(cell_id=f"p-p0:r{row}:c{col}", page_id="p-p0", row=row, col=col, field=field, text=text,
                  confidence=0.99, status=status,
                  bbox=BBox(x0=col * 100, y0=row * 50, x1=col * 100 + 90, y1=row * 50 + 40))
             for row, col, field, text, status in readings]
    cells, persons = fields.interpret(cells, TEMPLATE)
    return PageResult(page=PageInfo(page_id="p-p0", source="/scans/a.png", page_index=0, width=2000, height=1500),
                      template=TEMPLATE.name, cells=cells, persons=persons)


def page_result(name: str, age: str) -> PageResult:
    return read_page([(0, 0, "name", name, "needs_review"), (0, 3, "age", age, "needs_review")])


def correct_age_to_38(connection) -> None:
    """What a review pull does: append a correction, then recompute the page."""
    with connection:
        connection.execute(
            "INSERT INTO corrections (cell_id, old_value, new_value, new_status, reviewer, corrected_at, source, "
            "annotation_id) VALUES ('p-p0:r0:c3', '3A', '38', 'corrected', 'anna', '2026-11-25T10:00:00', 'test', '1')")
        store.recompute_page(connection, "p-p0", TEMPLATE)


def test_writing_a_page_twice_replaces_it(tmp_path):
    with store.connect(tmp_path) as connection:
        store.create(connection, TEMPLATE)
        store.write_page(connection, page_result("Josep Puig", "34"), TEMPLATE)
        store.write_page(connection, page_result("Josep Puig", "34"), TEMPLATE)
        assert store.counts(connection)["cells"] == 2
        assert connection.execute("SELECT COUNT(*) FROM persons").fetchone()[0] == 1


def test_corrections_win_over_a_re_recognised_page(tmp_path):
    with store.connect(tmp_path) as connection:
        store.create(connection, TEMPLATE)
        store.write_page(connection, page_result("Josep Puig", "3A"), TEMPLATE)
        correct_age_to_38(connection)
        assert connection.execute("SELECT age FROM persons").fetchone()[0] == 38
        # a newer model reads the page again: the reviewer's value must survive
        store.write_page(connection, page_result("Josep Puig", "36"), TEMPLATE)
        cell = connection.execute("SELECT text, status, value FROM cells WHERE cell_id = 'p-p0:r0:c3'").fetchone()
        assert (cell["text"], cell["status"], cell["value"]) == ("38", "corrected", "38")
        assert connection.execute("SELECT age FROM persons").fetchone()[0] == 38


def test_row_statistics_are_kept_at_write_time_and_follow_corrections(tmp_path):
    with store.connect(tmp_path) as connection:
        store.create(connection, TEMPLATE)
        store.write_page(connection, page_result("Josep Puig", "3A"), TEMPLATE)
        stats = connection.execute("SELECT cells_needs_review, cells_corrected FROM row_stats").fetchone()
        assert tuple(stats) == (2, 0)
        correct_age_to_38(connection)
        stats = connection.execute("SELECT cells_needs_review, cells_corrected FROM row_stats").fetchone()
        assert tuple(stats) == (1, 1)


def ditto_page() -> PageResult:
    """Row 0 'Reus' read unsurely (awaits review), row 1 'id.' read surely (accepted)."""
    return read_page([(0, 5, "birth_place", "Reus", "needs_review"), (1, 5, "birth_place", "id.", "accepted")])


def test_a_ditto_waits_for_the_review_of_the_cell_it_copies(tmp_path):
    with store.connect(tmp_path) as connection:
        store.create(connection, TEMPLATE)
        store.write_page(connection, ditto_page(), TEMPLATE)
        pending = dict(connection.execute("SELECT row, cells_needs_review FROM row_stats").fetchall())
        assert pending == {0: 1, 1: 1}  # row 1's value is Reus only if row 0 really says Reus
        with connection:
            connection.execute(
                "INSERT INTO corrections (cell_id, old_value, new_value, new_status, reviewer, corrected_at, source, "
                "annotation_id) VALUES ('p-p0:r0:c5', 'Reus', 'Vic', 'corrected', 'anna', '2026-11-26', 'test', '1')")
            store.recompute_page(connection, "p-p0", TEMPLATE)
        pending = dict(connection.execute("SELECT row, cells_needs_review FROM row_stats").fetchall())
        assert pending == {0: 0, 1: 0}
        assert connection.execute("SELECT birth_place FROM persons WHERE row = 1").fetchone()[0] == "Vic"


def test_a_store_from_before_ditto_sources_gains_the_column(tmp_path):
    with store.connect(tmp_path) as connection:
        store.create(connection, TEMPLATE)
        store.write_page(connection, ditto_page(), TEMPLATE)
        connection.execute("DROP INDEX cells_value_from")  # as an earlier version wrote it
        connection.execute("ALTER TABLE cells DROP COLUMN value_from")
    with store.connect(tmp_path) as connection:
        with connection:
            store.recompute_page(connection, "p-p0", TEMPLATE)
        copied = connection.execute("SELECT value_from FROM cells WHERE row = 1").fetchone()[0]
        assert copied == "p-p0:r0:c5"
        assert connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'cells_value_from'").fetchone()


def test_a_store_from_before_machine_confidence_gains_it_from_the_confidence(tmp_path):
    with store.connect(tmp_path) as connection:
        store.create(connection, TEMPLATE)
        store.write_page(connection, page_result("Josep Puig", "34"), TEMPLATE)
        connection.execute("ALTER TABLE cells DROP COLUMN machine_confidence")  # as an earlier version wrote it
        connection.execute("UPDATE cells SET confidence = 0.42 WHERE col = 3")
        connection.commit()
    with store.connect(tmp_path) as connection:
        rows = connection.execute("SELECT col, confidence, machine_confidence FROM cells ORDER BY col").fetchall()
        assert [tuple(row) for row in rows] == [(0, 0.99, 0.99), (3, 0.42, 0.42)]


def extra_page(page_id: str, remarks: dict[str, str]) -> PageResult:
    """A page with columns the template does not know, from column 14 on (`columns` kept them: 'extra')."""
    result = read_page([(0, 0, "name", "Josep Puig", "needs_review"),
                        *[(0, 14 + index, key, text, "needs_review")
                          for index, (key, text) in enumerate(remarks.items())]])
    result = PageResult.model_validate_json(result.model_dump_json().replace("p-p0", page_id))
    headers = {"extra_observacions": "Observacions", "extra_religio": "Religió"}
    result.columns = ColumnMapping(fields={0: "name", **{14 + i: key for i, key in enumerate(remarks)}},
                                   headers={0: "Nom", **{14 + i: headers[key] for i, key in enumerate(remarks)}},
                                   method={0: "header", **{14 + i: "extra" for i in range(len(remarks))}})
    return result


def test_a_column_the_template_does_not_know_becomes_a_column_of_the_run(tmp_path):
    with store.connect(tmp_path) as connection:
        store.create(connection, TEMPLATE)
        store.write_page(connection, extra_page("a-p0", {"extra_observacions": "transeünt"}), TEMPLATE)
        store.write_page(connection, extra_page("b-p0", {"extra_observacions": "absent", "extra_religio": "catòlic"}),
                         TEMPLATE)
        store.write_page(connection, extra_page("a-p0", {"extra_observacions": "present"}), TEMPLATE)  # again
        rows = connection.execute(
            "SELECT page_id, extra_observacions, extra_religio FROM persons ORDER BY page_id").fetchall()
        assert [tuple(row) for row in rows] == [("a-p0", "present", None), ("b-p0", "absent", "catòlic")]
        stored = store.stored_template(connection)
        assert [(c.key, c.type, c.label) for c in stored.columns[len(TEMPLATE.columns):]] == [
            ("extra_observacions", "text", "Observacions"), ("extra_religio", "text", "Religió")]
