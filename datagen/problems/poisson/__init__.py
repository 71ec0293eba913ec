"""Poisson -Laplace u = f with random forcing and Dirichlet data (docs/problems/poisson.md)."""
