"""opsolve: neural-operator learning on datasets written by ``datagen``."""

from datagen import __version__

__all__ = ["__version__"]
