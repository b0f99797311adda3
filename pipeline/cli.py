"""The `census` command line. The only place where errors become process exit codes."""

from __future__ import annotations

import sys
import typer

from pipeline.errors import CensusError

app = typer.Typer(help="Digitise handwritten population registers into a reviewed dataset.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def templates() -> None:
    """List the shipped register templates."""
    from pipeline.templates import available_templates, load_template

    for name, path in available_templates().items():
        template = load_template(path)
        columns = ", ".join(column.key for column in template.columns)
        typer.echo(f"{name}  [{template.language}]  {template.description.strip()}\n    columns: {columns}")


@app.callback()
def _census() -> None:
    """Digitise handwritten population registers into a reviewed dataset."""


def main() -> None:
    """Entry point: usage errors exit 2 (click); pipeline errors exit with their own code."""
    try:
        app()
    except CensusError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(int(error.exit_code))


if __name__ == "__main__":
    main()
