"""Evaluation of trained runs: metrics and figures (``evaluate``), rollouts of trajectory
models (``rollout``), side-by-side comparisons (``compare``) and the Spectral-Refiner
(``refine``), sharing ``report``."""
