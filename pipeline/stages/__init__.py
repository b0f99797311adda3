"""The stages of a page, one module per stage, in flow order: ingest (scans -> page images), preprocess
(deskew, turn, crop, contrast), layout (the table's rules -> grid), columns (which template column is which),
cells (cell crops), recognition (the engines are in `pipeline.recognize`), fields (typed values), route
(accept or review); `templates` loads the register templates (YAML in `templates/`) and `fieldtypes` the
field types, `image` the ink and ruled-line analysis the stages share. A stage may import earlier stages,
`image`, `pipeline.models`, `pipeline.errors`, `pipeline.recognize`, `pipeline.tesseract` and
`pipeline.lexicons`; never `pipeline.run`, `pipeline.dataset.dataset` or the CLI.
"""
