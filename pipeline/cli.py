"""The `census` command line. The only place where errors become process exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import CensusError, ExitCode

app = typer.Typer(help="Digitise handwritten population registers into a reviewed dataset.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def templates() -> None:
    """List the shipped register templates."""
    from pipeline.stages.templates import available_templates, load_template

    for name, path in available_templates().items():
        template = load_template(path)
        columns = ", ".join(column.key for column in template.columns)
        typer.echo(f"{name}  [{template.language}]  {template.description.strip()}\n    columns: {columns}")


@app.command()
def run(
    inputs: Annotated[list[Path], typer.Argument(help="Scans: files or folders of TIFF, JPEG, PNG, GIF, BMP, WebP or PDF.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (created; re-running resumes).")],
    template: Annotated[str, typer.Option(help="Template name (`census templates`) or YAML path.")] = (
        "padro-catala-1930"),
    engine: Annotated[str, typer.Option(help="Recognition engine: crnn, tesseract, trocr, null; NAME:MODEL picks "
                                             "its model, e.g. crnn:runs/train-crnn-finetune/RUN-970-cells/crnn.onnx.")] = "crnn",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    executor: Annotated[str, typer.Option(help="local (process pool) or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address (tcp://HOST:8786); without it, --executor dask starts a LocalCluster. "
             "See docs/cluster.md.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Run the pipeline on scans; exit 3 when some pages failed (see RUN_DIR/failures.jsonl)."""
    from pipeline.run.runner import RunOptions
    from pipeline.run.batch import run as run_pipeline

    if executor not in ("local", "dask"):
        raise typer.BadParameter(f"{executor!r} is not local or dask", param_hint="--executor")
    if scheduler and executor != "dask":
        raise typer.BadParameter("--scheduler needs --executor dask", param_hint="--scheduler")
    options = RunOptions(out=out, template=template, engine=engine, workers=workers,
                         executor=executor, scheduler=scheduler)
    summary = run_pipeline(inputs, options)
    if as_json:
        typer.echo(summary.model_dump_json())
    else:
        files = summary.files
        typer.echo(
            f"files: {files.inputs}: {files.processed} processed, {files.duplicates} duplicates, {files.failed} failed, "
            f"{files.skipped} skipped (format not read)\n"
            f"pages: {summary.pages} done ({summary.pages_skipped} from an earlier run), {summary.failures} failed\n"
            f"rows: {summary.rows}   cells: {summary.cells} ({summary.cells_empty} empty)\n"
            f"auto-accepted: {summary.accepted_pct}% of written cells   review queue: {summary.review_queue}\n"
            f"speed: {summary.pages_per_minute if summary.pages_per_minute else '- (nothing new)'} pages/min\n"
            f"results: {summary.run_dir}\n  store:    {summary.store}\n  report:   {Path(summary.run_dir) / 'report.html'}\n"
            f"  failures: {summary.failures_file}\n"
            f"next: census review push {summary.run_dir} (Label Studio), census query/search/export {summary.run_dir}")
    if summary.failures:
        raise typer.Exit(int(ExitCode.PAGES_FAILED))


from review.cli import review_app  # noqa: E402 - light: its commands import lazily

app.add_typer(review_app, name="review")


@app.command()
def synth(
    pages: Annotated[int, typer.Option("--pages", "-n", min=1, help="Number of pages to render.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the images and their ground truth.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same pages.")] = 0,
    template: Annotated[str, typer.Option(help="Template name (`census templates`) or YAML path.")] = (
        "padro-catala-1930"),
    skew_max: Annotated[float, typer.Option("--skew-max", help="Skew uniform in ±DEG degrees.")] = 3.0,
    fmt: Annotated[str, typer.Option("--format", help="png, jpg, tiff or pdf.")] = "png",
    pages_per_file: Annotated[int, typer.Option(min=1, help="Pages per multi-page TIFF/PDF file.")] = 1,
    stem: Annotated[str, typer.Option(help="File names: STEM-<first page:04d>.<ext>.")] = "synth",
    jpeg_quality: Annotated[int | None, typer.Option(min=10, max=100, help=(
        "JPEG quality for jpg; for tiff, JPEG-in-TIFF instead of lossless deflate."))] = None,
    style: Annotated[list[str] | None, typer.Option(help=(
        "Force a page style, KEY=VALUE, repeatable: missing_row_rules, faint_rules, broken_rules (true/false), "
        "cross_rate, noise_sigma, blur_sigma, skew_deg (numbers), hand_font (font file name)."))] = None,
) -> None:
    """Render synthetic handwritten register pages with PAGE XML + JSON ground truth."""
    from pipeline.synth import generate_pages
    from pipeline.synth.generate import parse_overrides

    for path in generate_pages(out, pages, seed, template=template, skew_max_deg=skew_max, fmt=fmt,
                               pages_per_file=pages_per_file, stem=stem, jpeg_quality=jpeg_quality,
                               overrides=parse_overrides(style or []), progress=True):
        typer.echo(str(path))


@app.command()
def query(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    sql: Annotated[str, typer.Argument(help="SELECT over persons, households, cells, pages, corrections.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    include_restricted: Annotated[bool, typer.Option(help="Do not mask embargoed persons.")] = False,
) -> None:
    """Read-only SQL (DuckDB) over the run's current, reviewed data."""
    from pipeline.dataset.query import format_result, run_query

    typer.echo(format_result(run_query(run_dir, sql, include_restricted), fmt))


@app.command()
def search(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    name: Annotated[str, typer.Argument(help="A name as written, e.g. 'Josep Puig i Serra'.")],
    born: Annotated[str | None, typer.Option(help="Birth year or range, e.g. 1880-1890.")] = None,
    place: Annotated[str | None, typer.Option(help="Birth place.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Number of hits.")] = 10,
    include_restricted: Annotated[bool, typer.Option(help="Also show embargoed persons.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
) -> None:
    """Fuzzy, phonetic person search robust to Catalan/Spanish spelling variants."""
    from pipeline.dataset.search import SearchQuery, parse_born
    from pipeline.dataset.search import search as run_search

    hits = run_search(run_dir, SearchQuery(text=name, born=parse_born(born), place=place, limit=limit,
                                           include_restricted=include_restricted))
    for hit in hits:
        typer.echo(hit.model_dump_json() if as_json else
                   f"{hit.score:.3f}  {hit.name}  b.{hit.birth_year or '?'} {hit.birth_place or ''}  "
                   f"page {hit.page_id} row {hit.row}  conf {hit.confidence or 0:.2f}  {hit.crop or ''}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet, jsonl, pagexml, alto, codebook, "
                                                      "training or all.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    include_restricted: Annotated[bool, typer.Option(help="Do not mask embargoed persons.")] = False,
) -> None:
    """Export persons and households (masked by the embargo) for other tools."""
    from pipeline.dataset.export import export as run_export

    typer.echo(run_export(run_dir, fmt, out, include_restricted).model_dump_json())


@app.command()
def browse(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8001,
) -> None:
    """Browse the run in datasette (masked copy; facets, full-text search, row crops)."""
    from pipeline.dataset.browse import serve

    raise typer.Exit(serve(run_dir, port))


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    page: Annotated[str, typer.Argument(help="Page id (or a unique prefix of it), or an input file name.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write (default RUN_DIR/overlays/).")] = None,
    include_restricted: Annotated[bool, typer.Option(help="Do not paint over embargoed persons' cells.")] = False,
) -> None:
    """Draw a page with its detected grid and cells coloured by status; prints the PNG's path."""
    from pipeline.run.report import write_overlay

    typer.echo(str(write_overlay(run_dir, page, out, include_restricted)))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="Run directory.")]) -> None:
    """(Re)write RUN_DIR/report.html, e.g. after review; prints its path."""
    from pipeline.run.report import write_report

    typer.echo(str(write_report(run_dir)))


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(
        help="Training recipe YAML (default models/crnn.yaml; with --from-corrections models/crnn-finetune.yaml).")] = None,
    from_corrections: Annotated[Path | None, typer.Option(
        help="Fine-tune the shipped model on this run's corrected cells (then: census run --engine crnn:ONNX).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    export: Annotated[Path | None, typer.Option(help="Where to write the ONNX model (default: in out_dir).")] = None,
) -> None:
    """Train the handwriting recogniser (resumable); prints the exported ONNX path."""
    from pipeline.htr.train import run_training

    typer.echo(run_training(config, from_corrections, device, export))


@app.command()
def calibrate(
    gt_dir: Annotated[Path, typer.Argument(help="Folder of page images with ALTO/PAGE XML beside them.")],
    split: Annotated[str, typer.Option(help="Pages to fit on: val (default), all, or train.")] = "val",
    check_split: Annotated[str | None, typer.Option(help="Also measure on this split, e.g. test.")] = None,
    target_error: Annotated[float, typer.Option(help="Highest error rate among auto-accepted readings.")] = 0.02,
    model: Annotated[Path | None, typer.Option(help="ONNX model (default models/crnn.onnx).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the reliability diagram and report.")] = Path("runs/calibration"),
    cells: Annotated[int, typer.Option(help="Synthetic cells added to the fit (training fonts) and checked (held-out fonts).")] = 1500,
) -> None:
    """Fit the crnn engine's confidence calibration on held-out lines and synthetic cells; store it beside the model."""
    from pipeline.htr.calibrate import calibrate_gt

    typer.echo(calibrate_gt(gt_dir, split, check_split, target_error, model, out, cells).model_dump_json())


@app.command()
def recalibrate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (holds census.sqlite).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Refit the run's confidence calibration on its reviewed cells and re-route the cells no reviewer answered
    (`census review pull` does it after every pull); writes RUN_DIR/calibration.json."""
    from pipeline.run.recalibrate import recalibrate as recalibrate_run

    summary = recalibrate_run(run_dir)
    typer.echo(summary.model_dump_json() if as_json else
               "\n".join(f"{key}: {value}" for key, value in summary.model_dump().items()))


@app.command()
def adapt(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (holds census.sqlite and the reviewers' corrections).")],
    config: Annotated[Path | None, typer.Option(help="Fine-tuning recipe YAML (default models/crnn-finetune.yaml).")] = None,
    minutes: Annotated[float | None, typer.Option(min=0, help="Training time budget (default: the recipe's, 20).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    reset: Annotated[bool, typer.Option("--reset", help="Remove the run's adapted models; read with the shipped one.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Fine-tune the recogniser on the run's reviewed cells (RUN_DIR/models/adapted-N, resumable), read every
    cell no reviewer touched again with it, re-type, re-route and recalibrate; later `census run --out RUN_DIR`
    pages are read with it too."""
    from pipeline.run.adapt import adapt as adapt_run
    from pipeline.run.adapt import reset as reset_run

    summary = reset_run(run_dir) if reset else adapt_run(run_dir, config, minutes, device)
    typer.echo(summary.model_dump_json() if as_json else
               "\n".join(f"{key}: {value}" for key, value in summary.model_dump(exclude={"recalibration"}).items()))


@app.command(name="lm")
def language_model(
    gt_dir: Annotated[Path | None, typer.Argument(help="Folder of page images with ALTO/PAGE XML (its training split is used).")] = None,
    from_corrections: Annotated[list[Path] | None, typer.Option(help="Also learn the reviewers' corrected cells of this run (repeatable).")] = None,
    model: Annotated[Path | None, typer.Option(help="ONNX model the LM is for (default models/crnn.onnx).")] = None,
    split: Annotated[str, typer.Option(help="Pages of GT_DIR whose lines it learns: train (default) or all.")] = "train",
    order: Annotated[int, typer.Option(help="Characters of context + 1.")] = 7,
) -> None:
    """Build the crnn engine's character language model (beside the model) from ground-truth lines,
    reviewed runs and the register vocabulary; it replaces the model's LM."""
    import json

    from pipeline.evaluation.evaluate_lines import DEFAULT_SPLIT_FILE
    from pipeline.htr.lm import build_model_lm
    from pipeline.recognize.crnn import DEFAULT_MODEL

    chosen = None if split == "all" else split
    typer.echo(json.dumps(build_model_lm(gt_dir, Path(model or DEFAULT_MODEL), chosen, DEFAULT_SPLIT_FILE, order,
                                         from_corrections or [])))


@app.command(name="eval")
def evaluate(
    gt_dir: Annotated[Path, typer.Argument(help="Folder of page images with ALTO/PAGE XML (lines) or table GT.")],
    engine: Annotated[str, typer.Option(help="Engine(s), comma-separated to compare on the same lines; NAME:MODEL "
                                             "picks its model (crnn:ONNX, trocr:FOLDER).")] = "crnn",
    tables: Annotated[bool, typer.Option(help="Table mode: cell-level evaluation of whole pages (cell detection, CER, typed values, the share of cells auto-accepted and wrong among them, and of typed values settled: nothing they depend on awaits review).")] = False,
    template: Annotated[str | None, typer.Option(help="Register template (table mode; in lines mode its review threshold is where `accepted` and `accepted_error` are measured).")] = None,
    split: Annotated[str | None, typer.Option(help="Only pages of this split (train/val/test) of models/crnn.split.json.")] = None,
    pages: Annotated[list[str] | None, typer.Option(help="Only these page stems (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: the full report as JSON.")] = False,
) -> None:
    """Evaluate recognition against ground truth: CER/WER per line (default) or per table cell (--tables)."""
    if tables:
        from pipeline.evaluation.evaluate import evaluate_tables
        from pipeline.run.runner import DEFAULT_TEMPLATE

        result = evaluate_tables(gt_dir, template or DEFAULT_TEMPLATE, engine)
        for page in result.per_page:
            typer.echo(f"{page.image}#{page.page_index}\tcells {page.matched_cells}/{page.gt_cells}\t"
                       f"rows {page.matched_rows}/{page.gt_rows}\tcolumns {page.columns_correct}/{page.columns}\t"
                       f"accepted {page.accepted}/{page.written_cells} ({page.accepted_wrong} wrong)\t"
                       f"settled values {page.settled_values}/{page.values} ({page.settled_wrong} wrong)\t{page.error or ''}")
        typer.echo(result.model_dump_json(exclude=None if as_json else {"per_page"}))
        return
    from pipeline.evaluation.evaluate_lines import evaluate_lines, summary_line

    report = evaluate_lines(gt_dir, engine, split, pages, template=template)
    for score in report.engines:
        for page in score.pages:
            typer.echo(f"{score.engine}\t{page.page}\tlines {page.lines}\tCER {page.cer:.4f}\tWER {page.wer:.4f}")
        typer.echo(f"{score.engine}\tALL\tlines {score.lines}\tchars {score.chars}\tCER {score.cer:.4f}\t"
                   f"WER {score.wer:.4f}\texact {score.exact:.3f}\taccepted at {score.threshold:g} "
                   f"{score.accepted:.3f} ({score.accepted_error:.3f} wrong)\tECE {score.ece:.3f}\t"
                   f"{score.lines / max(score.seconds, 1e-9):.1f} lines/s")
    typer.echo(summary_line(report, full=as_json))


@app.callback()
def _census() -> None:
    """Digitise handwritten population registers into a reviewed dataset."""


class _Stopped(BaseException):
    """SIGINT or SIGTERM received (Ctrl-C, a scheduler's timeout, `systemctl stop`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_stop_signal(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def main() -> None:
    """Entry point: usage errors exit 2 (click); pipeline errors exit with their own code;
    SIGINT / SIGTERM stop the command (pages finished so far are kept) with exit 130 / 143."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_stop_signal)
    try:
        app()
    except CensusError as error:
        typer.echo(f"error: {' '.join(str(error).split())}", err=True)  # one line, whatever the message
        sys.exit(int(error.exit_code))
    except _Stopped as stop:
        name = signal.Signals(stop.signum).name
        typer.echo(f"stopped by {name}; finished pages are kept: run the same command again to resume",
                   err=True)
        sys.exit(128 + stop.signum)


if __name__ == "__main__":
    main()
