"""`census` import name for notebooks: `from census import open_run` (pipeline.notebook).

A thin alias of the `pipeline` package's notebook API, imported on first use."""

__all__ = ["open_run", "Run"]


def __getattr__(name: str):  # PEP 562: lazy attributes
    if name in __all__:
        from pipeline import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'census' has no attribute {name!r}")
