"""`census review ...`: thin typer commands over review.server / push / pull (mounted by pipeline.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

review_app = typer.Typer(help="Human review of uncertain cells in a local Label Studio server.",
                         no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option(
    help="Label Studio data directory (database, token, log); default $CENSUS_LS_DATA_DIR or "
         "~/.local/share/census/label-studio.")]
Url = Annotated[str | None, typer.Option(help="Label Studio URL (default: the server `serve` started).")]
Project = Annotated[int | None, typer.Option(help="Label Studio project id (default: the one this run used).")]
Json = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
RunDir = Annotated[Path, typer.Argument(help="Run directory (holds census.sqlite).")]


def _echo(model: BaseModel, as_json: bool) -> None:
    if as_json:
        typer.echo(model.model_dump_json())
    else:
        typer.echo("\n".join(f"{key}: {value}" for key, value in model.model_dump().items()))


@review_app.command()
def install() -> None:
    """Install label-studio in its own virtualenv (.venv-ls) unless already there."""
    from review import server

    typer.echo(server.ensure_installed())


@review_app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (refused if taken).")] = 8090,
    data_dir: DataDir = None,
    document_root: Annotated[Path | None, typer.Option(
        help="Folder whose files Label Studio may serve (must contain the run directories); default: cwd.")] = None,
) -> None:
    """Start Label Studio (installing it first if needed) and print how to log in."""
    from review import server

    typer.echo(server.login_hint(server.start(data_dir, port=port, document_root=document_root)))


@review_app.command()
def stop(data_dir: DataDir = None) -> None:
    """Stop the Label Studio server started by `serve`."""
    from review import server

    typer.echo("stopped" if server.stop(data_dir) else "no server was running")


@review_app.command()
def push(run_dir: RunDir, url: Url = None, project: Project = None,
         new_project: Annotated[bool, typer.Option(help="Create a new project even if this run has one.")] = False,
         data_dir: DataDir = None,
         document_root: Annotated[Path | None, typer.Option(
             help="The server's local-files document root (default: what `serve` recorded).")] = None,
         as_json: Json = False) -> None:
    """Push the run's review queue (idempotent: only new or re-recognised cells change)."""
    from review import push as pushing
    from review.client import open_client

    client = open_client(url, data_dir)
    root = pushing.document_root_for(url, data_dir, document_root)
    _echo(pushing.push(run_dir, client, root, project=project, new_project=new_project), as_json)


@review_app.command()
def pull(run_dir: RunDir, url: Url = None, project: Project = None, data_dir: DataDir = None,
         as_json: Json = False) -> None:
    """Pull reviewers' annotations into the store as corrections (idempotent, resumable)."""
    from review import pull as pulling
    from review.client import open_client

    _echo(pulling.pull(run_dir, open_client(url, data_dir), project=project), as_json)


@review_app.command()
def status(run_dir: RunDir, url: Url = None, project: Project = None, data_dir: DataDir = None,
           as_json: Json = False) -> None:
    """Pushed / done / pending task counts, and the store's queue and corrections."""
    from review import push as pushing
    from review.client import open_client

    _echo(pushing.status(run_dir, open_client(url, data_dir), project=project), as_json)
