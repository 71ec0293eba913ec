"""Darcy flow -div(a grad u) = f with random coefficients (docs/problems/darcy.md)."""
