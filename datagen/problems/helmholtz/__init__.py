"""Indefinite Helmholtz with an absorbing boundary (docs/problems/helmholtz.md)."""
