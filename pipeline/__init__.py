"""census: digitise handwritten historical population registers into a reviewed dataset.

`from pipeline import open_run` is the notebook API (pipeline.notebook), imported on first use
so that `import pipeline` stays cheap."""

__version__ = "0.1.0"
_NOTEBOOK_NAMES = {"open_run", "Run"}


def __getattr__(name: str):  # PEP 562: lazy attributes
    if name in _NOTEBOOK_NAMES:
        from pipeline import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
