"""The `census` command line. The only place where errors become process exit codes."""

from __future__ import annotations

import sys
import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import CensusError, ExitCode

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


@app.command()
def run(
    inputs: Annotated[list[Path], typer.Argument(help="Scans: files or folders of TIFF, JPEG, PNG or PDF.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (created; re-running resumes).")],
    template: Annotated[str, typer.Option(help="Template name (`census templates`) or YAML path.")] = (
        "padro-catala-1930"),
    engine: Annotated[str, typer.Option(help="Recognition engine: crnn, tesseract, trocr, null.")] = "crnn",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    executor: Annotated[str, typer.Option(help="local (process pool) or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (tcp://HOST:8786).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Run the pipeline on scans; exit 3 when some pages failed (see RUN_DIR/failures.jsonl)."""
    from pipeline.runner import RunOptions
    from pipeline.runner import run as run_pipeline

    options = RunOptions(out=out, template=template, engine=engine, workers=workers,
                         executor=executor, scheduler=scheduler)
    summary = run_pipeline(inputs, options)
    if as_json:
        typer.echo(summary.model_dump_json())
    else:
        typer.echo(
            f"pages: {summary.pages} done ({summary.pages_skipped} from an earlier run), {summary.failures} failed\n"
            f"rows: {summary.rows}   cells: {summary.cells} ({summary.cells_empty} empty)\n"
            f"auto-accepted: {summary.accepted_pct}% of written cells   review queue: {summary.review_queue}\n"
            f"speed: {summary.pages_per_minute} pages/min\n"
            f"results: {summary.run_dir}\n  store:    {summary.store}\n  failures: {summary.failures_file}")
    if summary.failures:
        raise typer.Exit(int(ExitCode.PAGES_FAILED))


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
