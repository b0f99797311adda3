"""Write synthetic register pages to disk (PNG, JPEG, multi-page TIFF or PDF) with their PAGE
XML and JSON ground truth beside them.

Naming: a single-page image `<stem>.png` (or one-page TIFF/PDF) gets `<stem>.xml` + `<stem>.json`;
page k (0-based) of a multi-page `<stem>.tif` / `<stem>.pdf` gets `<stem>.p<k>.xml` +
`<stem>.p<k>.json`. Page i of
a batch is rendered from a seed derived from (seed, i) only, so the same seed gives the same
pages whatever the format or grouping.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.errors import UsageError
from pipeline.pagexml import (PageGroundTruth, groundtruth_paths, to_table_groundtruth,
                              write_json_groundtruth, write_page_xml)
from pipeline.run.paths import make_folder
from pipeline.synth.page import render_page
from pipeline.stages.templates import load_template

FORMATS = {"png": ".png", "jpg": ".jpg", "tiff": ".tif", "pdf": ".pdf"}
MULTI_PAGE_FORMATS = {"tiff", "pdf"}
JPEG_QUALITY = 88


def page_seed(seed: int, index: int) -> int:
    """The render seed of page `index` of a batch generated with `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _save(images: list[np.ndarray], path: Path, fmt: str, dpi: float, jpeg_quality: int | None) -> None:
    pictures = [Image.fromarray(image, mode="L") for image in images]
    first, rest = pictures[0], pictures[1:]
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "png":
        first.save(tmp, format="PNG", dpi=(dpi, dpi), compress_level=6)
    elif fmt == "jpg":
        first.save(tmp, format="JPEG", dpi=(dpi, dpi), quality=jpeg_quality or JPEG_QUALITY)
    elif fmt == "tiff":
        compression = {"compression": "jpeg", "quality": jpeg_quality} if jpeg_quality else {
            "compression": "tiff_deflate"}
        first.save(tmp, format="TIFF", save_all=True, append_images=rest, dpi=(dpi, dpi), **compression)
    else:
        first.save(tmp, format="PDF", save_all=True, append_images=rest, resolution=dpi)
    tmp.replace(path)


def _file_dpi(fmt: str, page_dpi: float) -> float:
    """One resolution per file (a PDF sizes every page with it). For PDF it is the resolution
    ingest renders PDFs at, so a rendered page has exactly the ground truth's pixel size."""
    if fmt != "pdf":
        return page_dpi
    from pipeline.stages.ingest import PDF_DPI

    return float(PDF_DPI)


def _write_groundtruth(image_path: Path, truth: PageGroundTruth, page_index: int | None) -> None:
    xml_path, json_path = groundtruth_paths(image_path, page_index)
    write_json_groundtruth(json_path, truth)
    write_page_xml(xml_path, to_table_groundtruth(truth), creator="census synth")


def _check_arguments(n_pages: int, fmt: str, pages_per_file: int, skew_max_deg: float) -> None:
    if n_pages < 1:
        raise UsageError(f"--pages must be at least 1, got {n_pages}")
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if pages_per_file < 1 or (pages_per_file > 1 and fmt not in MULTI_PAGE_FORMATS):
        raise UsageError(f"{pages_per_file} pages per file needs tiff or pdf, not {fmt}")
    if not 0 <= skew_max_deg <= 45:
        raise UsageError(f"skew must be within 0..45 degrees, got {skew_max_deg}")


def generate_pages(out_dir: Path, n_pages: int, seed: int, template: str = "padro-catala-1930",
                   skew_max_deg: float = 3.0, fmt: str = "png", pages_per_file: int = 1,
                   stem: str = "synth", jpeg_quality: int | None = None, overrides: dict[str, Any] | None = None,
                   progress: bool = False) -> list[Path]:
    """Render `n_pages` register pages into `out_dir`; return the image files written.

    Each page's skew is uniform in ±`skew_max_deg` and recorded exactly in its ground truth.
    `fmt` is png, jpg, tiff or pdf; with tiff/pdf, `pages_per_file` pages share one file.
    Files are named `<stem>-<first page index:04d>.<ext>`. Deterministic for a given seed.
    `jpeg_quality` sets the JPEG quality of jpg files (default 88) and, for tiff, switches
    from lossless deflate to JPEG-in-TIFF (smaller, as many archive scans are). `overrides`
    forces style choices on every page (see `pipeline.synth.page.OVERRIDABLE`).
    """
    _check_arguments(n_pages, fmt, pages_per_file, skew_max_deg)
    spec = load_template(template)
    out_dir = Path(out_dir)
    make_folder(out_dir)
    written: list[Path] = []
    indices = range(0, n_pages, pages_per_file)
    for first in _progress(indices, progress, fmt):
        path = out_dir / f"{stem}-{first:04d}{FORMATS[fmt]}"
        pages = [render_page(spec, page_seed(seed, i), skew_max_deg, path.name, i - first, overrides)
                 for i in range(first, min(n_pages, first + pages_per_file))]
        dpi = _file_dpi(fmt, pages[0][1].dpi)
        _save([image for image, _ in pages], path, fmt, dpi, jpeg_quality)
        multi = len(pages) > 1  # a one-page TIFF/PDF is named like a single image
        for image_index, (_, truth) in enumerate(pages):
            truth.dpi = dpi
            _write_groundtruth(path, truth, image_index if multi else None)
        written.append(path)
    return written


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (command line) -> overrides; true/false become booleans."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator:
            raise UsageError(f"--style expects KEY=VALUE, got {item!r}")
        lowered = value.strip().lower()
        overrides[key.strip()] = {"true": True, "false": False}.get(lowered, value.strip())
    return overrides


def _progress(items: range, enabled: bool, fmt: str) -> Iterable[int]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=f"synth {fmt}", unit="file")
