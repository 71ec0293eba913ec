"""Space-time plots of Korteweg-de Vries trajectories."""

from datagen.problems.semilinear.figures import figure

__all__ = ["figure"]
