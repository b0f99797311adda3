"""census: digitise handwritten historical population registers into a reviewed dataset."""

__version__ = "0.1.0"
