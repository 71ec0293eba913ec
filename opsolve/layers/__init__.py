"""Reusable layers: spectral convolutions (dense, low-rank, Monarch weights) and the multigrid
V-cycle layer."""
