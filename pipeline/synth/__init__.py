"""Synthetic handwritten register pages with exact ground truth (PAGE XML 2019 + JSON).

- `generate_pages(out_dir, n_pages, seed, ...)`: write pages and their ground truth to disk.
- `render_page(template, seed, skew_max_deg)`: one page in memory (image + `PageGroundTruth`).
- `handwriting_fonts()`, `render_text(text, font, height_px, rng)`: the handwriting renderer,
  shared with the handwriting recogniser's training-data generation.

May import `pipeline.stages.templates`, `pipeline.pagexml`, `pipeline.lexicons`, `pipeline.errors`;
the stages and the run never import it (only tests, evaluation, `pipeline.htr` training and the CLI do).
"""

from pipeline.synth.fonts import handwriting_fonts, print_fonts, render_text
from pipeline.synth.generate import FORMATS, generate_pages, page_seed
from pipeline.synth.households import DITTO_MARKS
from pipeline.synth.page import render_page

__all__ = ["DITTO_MARKS", "FORMATS", "generate_pages", "handwriting_fonts", "page_seed", "print_fonts",
           "render_page", "render_text"]
