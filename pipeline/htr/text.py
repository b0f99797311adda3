"""Transcription normalisation and the character set shared by training, export and the engine.

Conventions (applied identically to ground truth and to the model's output space):
- Unicode NFC; `ŀ` (Catalan middle-dot l) is spelled `l·l`.
- `^` marks a superscript in the LECTAUREP/CREMMA transcriptions (`dud^t`, `1^er`): the marker is
  dropped and the raised letters are kept in reading order (`dudt`, `1er`), since a cell's literal
  text has no superscript channel.
- `XXX` marks words the transcribers could not read: such lines are *excluded* from training and
  evaluation (their ground truth is not the text on the image).
- Runs of whitespace collapse to one space; typographic apostrophes become `'`.
"""

from __future__ import annotations

import re
import unicodedata

UNREAD_MARK = "XXX"
_SPACES = re.compile(r"\s+")
_REPLACEMENTS = {"ŀ": "l·l", "Ŀ": "L·L", "’": "'", "‘": "'", "ʼ": "'", "^": "", "\u00a0": " "}


def normalize_text(text: str) -> str:
    """Return `text` in the canonical form the recogniser reads and writes."""
    text = unicodedata.normalize("NFC", text)
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    return _SPACES.sub(" ", text).strip()


def is_unread(text: str) -> bool:
    """True when the transcription contains words the transcriber could not read."""
    return UNREAD_MARK in text
