"""Kuramoto-Sivashinsky u_t + u u_x + nu u_xx + u_xxxx = 0, periodic (docs/problems/ks_kdv.md)."""
