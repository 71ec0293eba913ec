"""The PDE families, one package each (``config``, ``physics``, ``recipe``, ``verify``, and
optionally ``figures``); :mod:`datagen.problems.registry` maps their names to them."""
