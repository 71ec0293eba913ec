"""Complete operator models, built from :mod:`opsolve.layers`."""
