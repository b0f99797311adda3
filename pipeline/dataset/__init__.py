"""The historians' side, read from a run's store: `dataset` opens and joins the runs, `query` and
`search` (with `names` and `name_variants` for spelling variants) find persons, `households` groups
them, `embargo` hides living persons, `export` writes CSV/Parquet, `browse` serves them with datasette
(plugins in `browse/`), `datagen` writes realistic synthetic persons straight into a store (tests,
`bench`), `bench` measures it all on a million persons. May import `pipeline.run.store`,
`pipeline.stages` (fields, templates), `pipeline.lexicons`, `pipeline.models`, `pipeline.errors` and
(`datagen`, `bench`) `pipeline.synth`; only the CLI imports it.
"""
