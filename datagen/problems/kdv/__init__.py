"""Korteweg-de Vries u_t + a u u_x + b u_xxx = 0, periodic (docs/problems/ks_kdv.md)."""
