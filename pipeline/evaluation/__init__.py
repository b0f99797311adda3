"""Measuring the pipeline against ground truth and timing it: `evaluate` scores pages' tables and cells
(`census eval`), `evaluate_lines` the recogniser on ground-truth lines, `bench` the end-to-end benchmark
(`make bench`). May import everything below the CLI (`pipeline.run`, `pipeline.stages`, `pipeline.recognize`,
`pipeline.htr`, `pipeline.synth`); nothing in the pipeline imports it except `pipeline.htr`'s measurement scripts.
"""
