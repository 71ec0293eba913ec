"""Space-time plots of Kuramoto-Sivashinsky trajectories."""

from datagen.problems.semilinear.figures import figure

__all__ = ["figure"]
