"""datagen: PDE dataset generation (random fields, discretizations, solvers, dataset files)."""

from importlib import metadata

try:
    __version__ = metadata.version("opsolve")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"
