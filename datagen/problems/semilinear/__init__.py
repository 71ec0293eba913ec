"""What the 1-D semilinear problems ``u_t = L u + N(u)`` on a periodic interval share (the
config sections, the ETDRK4 pseudo-spectral solver, the recipe, the file check, the figure):
Kuramoto-Sivashinsky (``ks``) and Korteweg-de Vries (``kdv``) are thin packages on top
(docs/problems/ks_kdv.md). Not a problem of the registry itself."""
