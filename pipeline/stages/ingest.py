"""Ingest: find input files, identify them by content, and load each page as a grey image.

Inputs are TIFF, JPEG, PNG, GIF, BMP, WebP or PDF. Every page of a multi-page TIFF or PDF and
every frame of an animated GIF or WebP is a page. The format is detected from the file's bytes,
never trusted from its extension; in a folder, files whose extension is none of these are not
read but listed (`unsupported`), so no file vanishes unseen. Every way a file can be unusable maps to a
`PageError` with a short machine-readable reason, so a bad file fails alone and the batch
goes on. Pages come out as grey uint8 arrays (dark ink on light paper) with EXIF
orientation applied: these are the "original page" pixels all coordinates refer to.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from pipeline.errors import PageError, UsageError
from pipeline.models import PageInfo

if TYPE_CHECKING:  # imported lazily at run time
    import pypdfium2
    from PIL import Image

INPUT_SUFFIXES = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".pdf"}
UNSUPPORTED = "unsupported-format"  # the reason recorded for a file in a folder that is not read
DEFAULT_MAX_PIXELS = 120_000_000  # 120 megapixels: a 600 dpi A2 sheet; beyond that, a bomb
MIN_SIDE = 200  # pixels; a page smaller than this cannot hold a readable table
PDF_DPI = 200.0

# What Pillow's decoders raise on corrupt data besides OSError (found by tests/test_fuzz.py).
_CORRUPT_DATA_ERRORS = (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, ZeroDivisionError,
                        struct.error, MemoryError)

# Leading bytes of the formats we accept.
_MAGIC: dict[bytes, str] = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"II+\x00": "tiff",  # BigTIFF
    b"MM\x00+": "tiff",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
    b"%PDF-": "pdf",
}
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}  # the DIB header sizes BMP writers use


class SourceInfo(BaseModel):
    """One input file, identified by content."""

    path: str
    sha256: str  # first 16 hex digits of the file's sha256
    n_pages: int
    kind: Literal["image", "pdf"]


class InputFiles(BaseModel):
    """The files of the inputs: those to read, and those in folders whose format is not read."""

    files: list[Path] = []
    unsupported: list[Path] = []


def find_inputs(inputs: list[Path]) -> InputFiles:
    """Files as given (always read); folders expanded recursively (sorted), hidden files and folders
    left out, files with an extension of another format listed as unsupported."""
    found = InputFiles()
    for given in inputs:
        if not given.exists():
            raise UsageError(f"input not found: {given}")
        if not given.is_dir():
            found.files.append(given)
            continue
        for path in _files_in_folder(given):
            (found.files if path.suffix.lower() in INPUT_SUFFIXES else found.unsupported).append(path)
    return found


def _files_in_folder(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if not hidden and path.is_file():
            files.append(path)
    return files


def file_sha16(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def sniff_format(path: Path) -> str:
    """'jpeg' | 'png' | 'tiff' | 'gif' | 'bmp' | 'webp' | 'pdf' from the leading bytes; PageError otherwise."""
    try:
        with path.open("rb") as handle:
            head = handle.read(32)
    except OSError as error:
        raise PageError("unreadable", str(error)) from error
    if not head:
        raise PageError("empty-file", f"{path} has 0 bytes")
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_HEADER_SIZES:
        return "bmp"
    raise PageError("not-an-image", f"{path} is not a TIFF, JPEG, PNG, GIF, BMP, WebP or PDF "
                                    f"(leading bytes {head[:8]!r})")


def probe(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> SourceInfo:
    """Identify a file by content and check it can be decoded; PageError with a specific reason if not."""
    kind = sniff_format(path)
    if kind == "pdf":
        n_pages = _pdf_page_count(path)
    else:
        n_pages = _image_page_count(path, max_pixels)
    return SourceInfo(path=str(path.resolve()), sha256=file_sha16(path), n_pages=n_pages,
                      kind="pdf" if kind == "pdf" else "image")


def load_page(path: Path, page_index: int,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[PageInfo, np.ndarray]:
    """Page `page_index` of `path` as a grey uint8 image plus its PageInfo."""
    kind = sniff_format(path)
    if kind == "pdf":
        grey, dpi = _render_pdf_page(path, page_index, max_pixels), PDF_DPI
    else:
        grey, dpi = _decode_image_page(path, page_index, max_pixels)
    height, width = grey.shape
    if min(height, width) < MIN_SIDE:
        raise PageError("too-small", f"page is {width}x{height} px; at least {MIN_SIDE} px a side needed")
    info = PageInfo(page_id=f"{file_sha16(path)}-p{page_index}", source=str(path.resolve()),
                    page_index=page_index, width=width, height=height, dpi=dpi)
    return info, grey


# --- raster images -------------------------------------------------------------------------


def _open_image(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse declared sizes over `max_pixels` before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF in a cut file: we report it below
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise PageError("decompression-bomb", str(error)) from error
    except UnidentifiedImageError as error:
        # The magic bytes said image, but the header does not parse: the file was cut short.
        raise PageError("truncated", f"cannot parse the image header: {error}") from error
    except _CORRUPT_DATA_ERRORS as error:
        raise PageError(_decode_reason(error), str(error)) from error
    _check_pixels(image.size, max_pixels)
    return image


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise PageError("decompression-bomb",
                        f"declared size {width}x{height} is over the limit of {max_pixels} pixels")


def _decode_reason(error: BaseException) -> str:
    message = str(error).lower()
    truncated = any(word in message for word in ("truncat", "premature", "end of file", "eof", "broken data"))
    return "truncated" if truncated or isinstance(error, EOFError) else "unreadable"


def _image_page_count(path: Path, max_pixels: int) -> int:
    """Frame count (pages of a TIFF, frames of an animated GIF or WebP); the first frame is fully
    decoded so a truncated file fails here."""
    image = _open_image(path, max_pixels)
    with image:
        try:
            n_frames = getattr(image, "n_frames", 1)  # walks every frame header of a TIFF
        except _CORRUPT_DATA_ERRORS as error:
            raise PageError(_decode_reason(error), str(error)) from error
        _load_frame(image, 0, max_pixels)
    return n_frames


def _load_frame(image: Image.Image, index: int, max_pixels: int) -> Image.Image:
    from PIL import ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF: decoding goes on without it
            image.seek(index)
            _check_pixels(image.size, max_pixels)
            image.load()
            return ImageOps.exif_transpose(image)
    except EOFError as error:
        raise PageError("page-out-of-range", f"no page {index} in {image.filename}") from error
    except _CORRUPT_DATA_ERRORS as error:
        raise PageError(_decode_reason(error), str(error)) from error


def _decode_image_page(path: Path, page_index: int, max_pixels: int) -> tuple[np.ndarray, float | None]:
    image = _open_image(path, max_pixels)
    with image:
        frame = _load_frame(image, page_index, max_pixels)
        dpi = image.info.get("dpi")
        return to_grey(frame), (float(dpi[0]) if dpi and dpi[0] else None)


def to_grey(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> grey uint8: alpha composited on white, 16-bit scaled, palette/CMYK converted."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image).astype(np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0  # 16-bit samples -> 8-bit
        return np.clip(values / scale, 0, 255).round().astype(np.uint8)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L")
    return np.asarray(image, dtype=np.uint8).copy()


# --- PDF -----------------------------------------------------------------------------------


def _open_pdf(path: Path) -> pypdfium2.PdfDocument:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as error:
        # PDFium's error message can be stale from an earlier call, so tell causes apart by content.
        raise PageError(_pdf_failure_reason(path), str(error)) from error


def _pdf_failure_reason(path: Path) -> str:
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data.find(b"/Encrypt") >= 0:
            return "pdf-encrypted"
        if re.search(rb"/Type\s*/Page(?![a-zA-Z])", data) is None:
            return "pdf-no-pages"
        if data.rfind(b"%%EOF", max(0, len(data) - 2048)) < 0:
            return "truncated"
    return "unreadable"


def _pdf_page_count(path: Path) -> int:
    document = _open_pdf(path)
    try:
        n_pages = len(document)
    finally:
        document.close()
    if n_pages == 0:
        raise PageError("pdf-no-pages", f"{path} has no pages")
    return n_pages


def _render_pdf_page(path: Path, page_index: int, max_pixels: int) -> np.ndarray:
    import pypdfium2 as pdfium

    document = _open_pdf(path)
    try:
        if not 0 <= page_index < len(document):
            raise PageError("page-out-of-range", f"no page {page_index} in {path} ({len(document)} pages)")
        scale = PDF_DPI / 72.0
        try:
            page = document[page_index]
            width_pt, height_pt = page.get_size()
            _check_pixels((round(width_pt * scale), round(height_pt * scale)), max_pixels)
            bitmap = page.render(scale=scale, grayscale=True, fill_color=(255, 255, 255, 255))
        except pdfium.PdfiumError as error:  # a damaged page object in an otherwise readable file
            raise PageError("unreadable", f"page {page_index} of {path}: {error}") from error
        return to_grey(bitmap.to_pil())
    finally:
        document.close()
