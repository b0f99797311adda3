"""The historians' side, read from a run's store: `dataset` opens and joins the runs, `query` and
`search` (with `names` and `name_variants` for spelling variants) find persons, `households` groups
them, `embargo` hides living persons, `export` writes CSV/Parquet, `browse` serves them with datasette
(plugins in `browse/`), `bench` measures it on a million persons. May import `pipeline.run.store`,
`pipeline.stages.fields`/`templates`, `pipeline.models`, `pipeline.errors` (and `pipeline.synth` only
in `bench`); nothing in the pipeline imports it.
"""
