"""Where a run keeps each page's files (RUN_DIR/pages/<page_id>.json, RUN_DIR/images/<page_id>.jpg),
reading the kept page image back, writing a file atomically, and making an output folder: shared by
the runner, the distributed executor, the report, review, fine-tuning, synth and export."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import UsageError


def page_json_path(run_dir: Path, page_id: str) -> Path:
    return run_dir / "pages" / f"{page_id}.json"



def page_image_path(run_dir: Path, page_id: str) -> Path:
    return run_dir / "images" / f"{page_id}.jpg"



def load_page_image(run_dir: Path, page_id: str) -> np.ndarray | None:
    """The page image the run kept (grey), or None with a message when it is gone."""
    path = page_image_path(Path(run_dir), page_id)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if image is None:
        print(f"page image {path} is missing; its cells are skipped", file=sys.stderr)
    return image



def make_folder(path: Path, option: str = "--out") -> None:
    """Create the output folder `path` (and its parents); UsageError naming `option` when it cannot be."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot create the folder ({error.strerror})") from error


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
