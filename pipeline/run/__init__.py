"""A run's machinery: `batch` drives a whole run (plan, execute, fill the store, report), `runner` plans
the page tasks, takes one page through every stage and runs the tasks in a local worker pool, `distributed`
runs them on a Dask cluster instead, `store` is the SQLite store, `paths` where a run folder keeps each
page's files, `report` the run's HTML report, `lifetime` ties the worker processes to the run. May import
`pipeline.stages`, `pipeline.recognize`, `pipeline.models` and `pipeline.errors`, and `report` the embargo
masking of `pipeline.dataset` (its thumbnails are masked like every image the run gives out); the stages never import it.
"""
