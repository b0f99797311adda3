"""Datasette plugin of `census browse`: the crop of a person's register row, cut on demand from
the run's page image, and the `crop` column rendered as a thumbnail link. Restricted persons
(no crop link in the masked copy) get 404: their handwriting would show what the copy masks.
The crop is the person's row inset from its rules, with any restricted neighbour's masked cells
that reach into it painted over (pipeline.dataset.embargo.redact).
"""

from __future__ import annotations

from pathlib import Path

from datasette import hookimpl
from datasette.utils.asgi import Response
from markupsafe import Markup, escape

from pipeline.dataset.dataset import readonly

PLUGIN = "census-crops"


def _row_box(browse_db: str, person_id: str) -> tuple[str, tuple[int, int, int, int], list[int]] | None:
    """Page, row box and the page's restricted rows, for an unrestricted person; None otherwise."""
    with readonly(Path(browse_db)) as connection:
        allowed = connection.execute(
            "SELECT page_id FROM persons WHERE person_id = ? AND crop IS NOT NULL", (person_id,)
        ).fetchone()
        restricted = [
            row for (row,) in connection.execute(
                "SELECT row FROM persons WHERE page_id = ? AND restricted", (allowed[0],)
            )
        ] if allowed else []
    if not allowed:
        return None
    run_dir = Path(browse_db).parent.parent
    with readonly(run_dir / "census.sqlite") as connection:
        row = connection.execute(
            "SELECT page_id, x0, y0, x1, y1 FROM persons WHERE person_id = ?", (person_id,)
        ).fetchone()
    return (row[0], tuple(row[1:]), restricted) if row and None not in row else None


async def crop(request, datasette):
    from pipeline.dataset.search import crop_image

    config = datasette.plugin_config(PLUGIN) or {}
    person_id = request.url_vars["person_id"]
    found = _row_box(config["browse_db"], person_id)
    path = crop_image(Path(config["run_dir"]), *found[:2], f"{person_id}-row", found[2]) if found else None
    if path is None:
        return Response.text("no crop for this person", status=404)
    return Response(path.read_bytes(), content_type="image/jpeg")


@hookimpl
def register_routes():
    return [(r"^/-/crop/(?P<person_id>[^/]+)$", crop)]


@hookimpl
def render_cell(value, column, table):
    if column == "crop" and table == "persons" and value:
        url = escape(value)
        return Markup(f'<a href="{url}"><img src="{url}" alt="row crop" style="height:28px"></a>')
    return None
