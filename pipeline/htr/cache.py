"""Pack normalised line crops into compressed arrays: the training set that travels to a GPU machine.

One `.npz` per (corpus, split): `pixels` (all crops side by side, `height x total_width` uint8),
`widths` (each crop's width) and `texts` (its normalised transcription). Training reads these and
nothing else, so a GPU machine needs neither the page images nor lxml/opencv.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.htr.data import SPLITS, GtPage, find_pages, line_crops, make_split, split_of
from pipeline.htr.preprocess import normalize_crop
from pipeline.htr.sources import CORPORA, DEFAULT_DIR, present

# (test, val) units held out per corpus: pages for lectaurep, wills for poilus, writers for copiste-d-un-jour;
# the external corpora's test archives are held out whole (pipeline.htr.sources), never cached
DEFAULT_HOLDOUT = {"lectaurep-dufour-1": (12, 6), "lectaurep-riant-4": (4, 2), "poilus": (12, 8)} | {
    corpus.name: (0, corpus.holdout_val) for corpus in CORPORA if corpus.role == "train"}


def quantize(pixels: np.ndarray) -> np.ndarray:
    """16 grey levels, near-white paper flattened to white: a 4x smaller cache for a negligible loss
    (training blurs and adds noise on top anyway)."""
    return np.where(pixels >= 208, 255, (pixels // 16) * 17).astype(np.uint8)


def pack(crops: list[np.ndarray], texts: list[str], path: Path) -> None:
    height = crops[0].shape[0] if crops else 1
    pixels = quantize(np.concatenate(crops, axis=1)) if crops else np.zeros((height, 0), np.uint8)
    widths = np.array([crop.shape[1] for crop in crops], np.int32)
    np.savez_compressed(path, pixels=pixels, widths=widths, texts=np.array(texts, dtype=object).astype(str))


def unpack(path: Path) -> tuple[list[np.ndarray], list[str]]:
    with np.load(path) as data:  # read each array once: NpzFile re-reads on every access
        pixels, widths, texts = data["pixels"], data["widths"], data["texts"]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    crops = [pixels[:, offsets[i]:offsets[i + 1]] for i in range(len(widths))]
    return crops, [str(text) for text in texts]


def page_crops(page: GtPage, height: int) -> tuple[list[np.ndarray], list[str]]:
    """Normalised crops and texts of a page's readable lines (lines with `XXX` are left out)."""
    crops = line_crops(page)
    return [normalize_crop(crop, height) for _, crop in crops], [line.text for line, _ in crops]


def corpus_folders(data_dir: Path, external_dir: Path = DEFAULT_DIR) -> dict[str, Path]:
    """The project's shared corpora and the external training corpora `make data` has fetched."""
    shared = [*sorted((data_dir / "lectaurep").glob("lectaurep-*")), data_dir / "poilus"]
    return {folder.name: folder for folder in shared if folder.is_dir()} | present(external_dir, "train")


def build_real_cache(data_dir: Path, out_dir: Path, height: int, holdout: dict[str, tuple[int, int]] | None = None,
                     external_dir: Path = DEFAULT_DIR) -> dict[str, dict[str, list[str]]]:
    """Write `<corpus>_<split>.npz` (train and val; test is read from the pages by `census eval`) for each
    corpus folder of `data_dir`, and `split.json`; return the split."""
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    pages_by_corpus = {name: find_pages(folder) for name, folder in corpus_folders(data_dir, external_dir).items()}
    split = make_split({name: [page.stem for page in pages] for name, pages in pages_by_corpus.items()},
                       holdout or DEFAULT_HOLDOUT)
    for name, pages in pages_by_corpus.items():
        by_split: dict[str, tuple[list[np.ndarray], list[str]]] = {s: ([], []) for s in SPLITS}
        for page in tqdm(pages, desc=name, file=None):
            which = split_of(page.stem, name, split)
            if which == "test":
                continue
            crops, texts = page_crops(page, height)
            by_split[which][0].extend(crops)
            by_split[which][1].extend(texts)
        for which in ("train", "val"):
            crops, texts = by_split[which]
            pack(crops, texts, out_dir / f"{name}_{which}.npz")
    (out_dir / "split.json").write_text(json.dumps(split, indent=1, ensure_ascii=False))
    return split


def is_held_out(font: Path, split: dict[str, list[Path]]) -> bool:
    """A held-out test font under any file name: the same (family, style), or the family of a held-out font
    none of whose styles is trained on (another packaging of Kristi is still Kristi)."""
    from pipeline.synth.fonts import font_name

    held_out = {font_name(path) for path in split["test"]}
    held_out_families = {family for family, _ in held_out} - {font_name(path)[0] for path in split["train"]}
    return font_name(font) in held_out or font_name(font)[0] in held_out_families


def build_synthetic_cache(out_dir: Path, height: int, train_count: int, val_count: int, seed: int = 1,
                          extra_fonts: tuple[str, ...] | list[str] = ()) -> None:
    """Write `synthetic_train.npz` and `synthetic_val.npz`, rendered with the training fonts only (plus
    `extra_fonts`, font file names or patterns, never a held-out font, under whatever file name)."""
    from pipeline.errors import UsageError
    from pipeline.htr.synthetic import font_split, synthetic_cells
    from pipeline.synth.fonts import installed_fonts

    split = font_split()
    extra = installed_fonts(list(extra_fonts))
    if held_out := sorted(path.name for path in extra if is_held_out(path, split)):
        raise UsageError(f"{', '.join(held_out)}: held out for the synthetic test, never trained on")
    fonts = split["train"] + [path for path in extra if path not in split["train"]]
    _pack_splits(out_dir, "synthetic", lambda count, seed: synthetic_cells(count, fonts, seed), height,
                 train_count, val_count, seed)


def build_page_cells_cache(out_dir: Path, height: int, train_count: int, val_count: int, seed: int) -> None:
    """Write `pages_train.npz` and `pages_val.npz`: written cells of synthetic register pages
    (`pipeline.htr.synthetic.page_cells`) in the training fonts the page synthesiser writes with."""
    from pipeline.htr.synthetic import font_split, page_cells
    from pipeline.synth.fonts import handwriting_fonts

    usable = set(handwriting_fonts())
    fonts = [font for font in font_split()["train"] if font in usable]
    _pack_splits(out_dir, "pages", lambda count, seed: page_cells(count, fonts, seed), height,
                 train_count, val_count, seed)


def _pack_splits(out_dir: Path, source: str, make_cells, height: int, train_count: int, val_count: int,
                 seed: int) -> None:
    """Write `<source>_train.npz` and `<source>_val.npz` from `make_cells(count, seed)`, the validation
    cells from their own seed."""
    for which, count, offset in (("train", train_count, 0), ("val", val_count, 1000)):
        crops, texts = make_cells(count, seed + offset)
        pack([normalize_crop(crop, height) for crop in crops], texts, out_dir / f"{source}_{which}.npz")
