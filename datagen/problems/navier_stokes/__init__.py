"""2-D incompressible Navier-Stokes on the torus (docs/problems/navier_stokes.md)."""
