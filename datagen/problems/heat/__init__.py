"""The heat equation u_t = div(a grad u) with random coefficients (docs/problems/heat.md)."""
