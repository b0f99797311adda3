"""Ground-truth text lines from ALTO v4 or PAGE XML beside page images, their crops, and the data split.

XML files are paired with images by file stem, whatever the case of their suffixes (the XML's own
`fileName` is not trusted). Coordinates are scaled to the image when the XML describes the page at
another size (an export made on the full-size scan, beside a reduced copy). Each line's crop is the
bounding box of its polygon with everything outside the polygon painted paper-white, so neighbouring
lines' ascenders and descenders do not leak in. Pages are split into train / val / test
deterministically (sha1 order of the page stem, or of the will for poilus), never by line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UsageError
from pipeline.htr.text import is_unread, normalize_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")  # lower-cased; the first wins when a stem has several
SAME_SHAPE = 0.02  # how far the XML's page and its image may differ in aspect ratio (rounded sizes)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GtLine:
    line_id: str
    text: str  # normalised (see pipeline.htr.text)
    polygon: list[tuple[int, int]]
    unread: bool = False


@dataclass
class GtPage:
    image: Path
    xml: Path
    lines: list[GtLine] = field(default_factory=list)
    size: tuple[float, float] | None = None  # the page's width and height in the XML's coordinates, if it says

    @property
    def stem(self) -> str:
        return self.image.stem


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _children(element: object, name: str) -> list:
    return [child for child in element.iter() if _local(child.tag) == name]  # type: ignore[attr-defined]


def _first(element: object, name: str):  # -> the first descendant of that local name, or None
    return next((child for child in element.iter() if _local(child.tag) == name), None)  # type: ignore[attr-defined]


def _alto_lines(root: object) -> list[GtLine]:
    lines = []
    for line in _children(root, "TextLine"):
        strings = [s.get("CONTENT", "") for s in line if _local(s.tag) == "String"]
        shape = _first(line, "Polygon")
        if shape is not None:
            values = [int(float(v)) for v in shape.get("POINTS", "").replace(",", " ").split()]
            polygon = list(zip(values[0::2], values[1::2]))
        else:
            x, y = int(float(line.get("HPOS", 0))), int(float(line.get("VPOS", 0)))
            w, h = int(float(line.get("WIDTH", 0))), int(float(line.get("HEIGHT", 0)))
            polygon = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        raw = " ".join(strings)
        lines.append(GtLine(line.get("ID", str(len(lines))), normalize_text(raw), polygon, is_unread(raw)))
    return lines


def _page_lines(root: object) -> list[GtLine]:
    lines = []
    for line in _children(root, "TextLine"):
        coords = next((c for c in line if _local(c.tag) == "Coords"), None)
        equiv = next((e for e in line if _local(e.tag) == "TextEquiv"), None)
        if coords is None or equiv is None:
            continue
        unicode_el = next((u for u in equiv if _local(u.tag) == "Unicode"), None)
        raw = unicode_el.text or "" if unicode_el is not None else ""
        polygon = [tuple(int(float(v)) for v in point.split(",")) for point in coords.get("points", "").split()]
        lines.append(GtLine(line.get("id", str(len(lines))), normalize_text(raw), polygon, is_unread(raw)))  # type: ignore[arg-type]
    return lines


def _declared_size(root: object, width: str, height: str) -> tuple[float, float] | None:
    """The first Page element's size from its `width` and `height` attributes, when both are given."""
    page = _first(root, "Page")
    if page is None:
        return None
    size = float(page.get(width) or 0), float(page.get(height) or 0)
    return size if min(size) > 0 else None


def _alto_size(root: object, xml_path: Path) -> tuple[float, float] | None:
    size = _declared_size(root, "WIDTH", "HEIGHT")
    unit = (getattr(_first(root, "MeasurementUnit"), "text", None) or "pixel").strip()
    if size is None and unit != "pixel":
        raise UsageError(f"{xml_path}: coordinates in {unit} but no page WIDTH/HEIGHT to place them on the image")
    return size


def read_xml(xml_path: Path) -> tuple[list[GtLine], tuple[float, float] | None]:
    """Lines of one ALTO v4 or PAGE XML file (format told by the root element), and the page size its
    coordinates refer to (None: not declared, coordinates are the image's pixels)."""
    from lxml import etree

    try:
        root = etree.parse(str(xml_path)).getroot()
    except etree.XMLSyntaxError as error:
        raise UsageError(f"{xml_path}: not well-formed XML ({error})") from None
    kind = _local(root.tag)
    if kind == "alto":
        lines, size = _alto_lines(root), _alto_size(root, xml_path)
    elif kind == "PcGts":
        lines, size = _page_lines(root), _declared_size(root, "imageWidth", "imageHeight")
    else:
        raise UsageError(f"{xml_path}: neither ALTO nor PAGE XML (root <{kind}>)")
    return [line for line in lines if line.text and len(line.polygon) >= 3], size


def find_pages(folder: Path) -> list[GtPage]:
    """Every image in `folder` (recursively) with an ALTO/PAGE XML of the same stem (`.JPG`, `.XML` and
    other cases too) beside it, in its parent folder, or in a sibling folder, as exports lay them out
    (eScriptorium: images beside `alto/` and `page/`; others: `jpg/` beside `alto/`). One XML per image:
    the first in path order (`alto/` before `page/`). A METS index among the XML files is passed over."""
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    xmls, images = [], {}
    for path in sorted(path for path in folder.rglob("*") if path.is_file()):
        suffix = path.suffix.lower()
        if suffix == ".xml":
            xmls.append(path)
        elif suffix in IMAGE_SUFFIXES:
            for key in ((path.parent, path.stem), (path.parent.parent, "*/" + path.stem)):
                known = images.get(key)
                if known is None or IMAGE_SUFFIXES.index(suffix) < IMAGE_SUFFIXES.index(known.suffix.lower()):
                    images[key] = path
    pages, paired = [], set()
    for xml_path in xmls:
        here, above = xml_path.parent, xml_path.parent.parent
        image = (images.get((here, xml_path.stem)) or images.get((above, xml_path.stem))
                 or images.get((above, "*/" + xml_path.stem)))
        if image is None or image in paired or _is_mets(xml_path):
            continue
        lines, size = read_xml(xml_path)
        pages.append(GtPage(image=image, xml=xml_path, lines=lines, size=size))
        paired.add(image)
    return pages


def _is_mets(xml_path: Path) -> bool:
    with xml_path.open("rb") as handle:
        head = handle.read(512).lstrip()
    return head.startswith(b"<mets") or b"<mets " in head or b"<mets:mets" in head


def load_grey(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise UsageError(f"cannot read image {path}")
    return image


def image_scale(page: GtPage, shape: tuple[int, ...]) -> tuple[float, float]:
    """Factors taking the XML's coordinates to the image's pixels (1, 1 when it declares no other size)."""
    if page.size is None:
        return 1.0, 1.0
    (width, height), (rows, columns) = page.size, shape[:2]
    x_scale, y_scale = columns / width, rows / height
    if abs(x_scale / y_scale - 1) > SAME_SHAPE:
        raise UsageError(f"{page.xml} describes a {width:g} x {height:g} page but {page.image} is {columns} x {rows},"
                         " not the same shape: is it this page's image?")
    return x_scale, y_scale


def line_crops(page: GtPage) -> list[tuple[GtLine, np.ndarray]]:
    """Each readable line of `page` (lines with `XXX` are left out) with its crop from the page image."""
    image = load_grey(page.image)
    x_scale, y_scale = image_scale(page, image.shape)
    return [(line, crop_line(image, [(round(x * x_scale), round(y * y_scale)) for x, y in line.polygon]))
            for line in page.lines if not line.unread]


def crop_line(page: np.ndarray, polygon: list[tuple[int, int]], pad: int = 4) -> np.ndarray:
    """The polygon's bounding box, padded, with pixels outside the polygon set to the paper's grey."""
    import cv2

    points = np.array(polygon, dtype=np.int32)
    x0, y0 = np.maximum(points.min(axis=0) - pad, 0)
    x1, y1 = np.minimum(points.max(axis=0) + pad + 1, (page.shape[1], page.shape[0]))
    crop = page[y0:y1, x0:x1].copy()
    if crop.size == 0:
        return np.full((8, 8), 255, np.uint8)
    mask = np.zeros(crop.shape, np.uint8)
    cv2.fillPoly(mask, [points - (x0, y0)], 255)
    mask = cv2.dilate(mask, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8))
    inside = crop[mask > 0]
    paper = int(np.percentile(inside, 90)) if inside.size else 255
    crop[mask == 0] = paper
    return crop


def unit_of(stem: str, corpus: str) -> str:
    """The unit a split keeps together: a will for poilus (stem before the last `-N`), a writer for
    copiste-d-un-jour (`imp_wikitexte_0051_1` and `_2` are one volunteer's), else the page."""
    if corpus == "poilus":
        return stem.rsplit("-", 1)[0]
    if corpus == "copiste-d-un-jour":
        return re.sub(r"_\d$", "", stem)
    return stem


def _ordered(units: set[str]) -> list[str]:
    return sorted(units, key=lambda unit: hashlib.sha1(unit.encode()).hexdigest())


def make_split(stems_by_corpus: dict[str, list[str]], holdout: dict[str, tuple[int, int]]) -> dict[str, dict[str, list[str]]]:
    """{split: {corpus: [units]}}; `holdout[corpus] = (n_test, n_val)` units taken in sha1 order."""
    split: dict[str, dict[str, list[str]]] = {name: {} for name in SPLITS}
    for corpus, stems in stems_by_corpus.items():
        units = _ordered({unit_of(stem, corpus) for stem in stems})
        n_test, n_val = holdout.get(corpus, (0, 0))
        split["test"][corpus] = sorted(units[:n_test])
        split["val"][corpus] = sorted(units[n_test:n_test + n_val])
        split["train"][corpus] = sorted(units[n_test + n_val:])
    return split


def split_of(stem: str, corpus: str, split: dict[str, dict[str, list[str]]]) -> str | None:
    unit = unit_of(stem, corpus)
    return next((name for name in SPLITS if unit in split[name].get(corpus, [])), None)
