"""Ground-truth text lines from ALTO v4 or PAGE XML beside page images, their crops, and the data split.

XML files are paired with images by file stem (the XML's own `fileName` is not trusted). Each line's
crop is the bounding box of its polygon with everything outside the polygon painted paper-white, so
neighbouring lines' ascenders and descenders do not leak in. Pages are split into train / val / test
deterministically (sha1 order of the page stem, or of the will for poilus), never by line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UsageError
from pipeline.htr.text import is_unread, normalize_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
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

    @property
    def stem(self) -> str:
        return self.image.stem


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _children(element: object, name: str) -> list:
    return [child for child in element.iter() if _local(child.tag) == name]  # type: ignore[attr-defined]


def _alto_lines(root: object) -> list[GtLine]:
    lines = []
    for line in _children(root, "TextLine"):
        strings = [s.get("CONTENT", "") for s in line if _local(s.tag) == "String"]
        polygons = _children(line, "Polygon")
        if polygons:
            values = [int(float(v)) for v in polygons[0].get("POINTS", "").replace(",", " ").split()]
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


def read_lines(xml_path: Path) -> list[GtLine]:
    """Lines of one ALTO v4 or PAGE XML file (format told by the root element)."""
    from lxml import etree

    root = etree.parse(str(xml_path)).getroot()
    kind = _local(root.tag)
    if kind == "alto":
        lines = _alto_lines(root)
    elif kind == "PcGts":
        lines = _page_lines(root)
    else:
        raise UsageError(f"{xml_path}: neither ALTO nor PAGE XML (root <{kind}>)")
    return [line for line in lines if line.text and len(line.polygon) >= 3]


def find_pages(folder: Path) -> list[GtPage]:
    """Every image in `folder` (recursively) with an ALTO/PAGE XML of the same stem beside it."""
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    pages = []
    for xml_path in sorted(folder.rglob("*.xml")):
        image = next((xml_path.with_suffix(s) for s in IMAGE_SUFFIXES if xml_path.with_suffix(s).exists()), None)
        if image is not None:
            pages.append(GtPage(image=image, xml=xml_path, lines=read_lines(xml_path)))
    return pages


def load_grey(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise UsageError(f"cannot read image {path}")
    return image


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
    """The unit a split keeps together: a will for poilus (stem before the last `-N`), else the page."""
    return stem.rsplit("-", 1)[0] if corpus == "poilus" else stem


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
