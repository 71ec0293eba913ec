"""The numerical engine: batched Krylov solvers (CG with recycling, GCRO-DR), geometric
multigrid, sorting and chains for Sorting Krylov Recycling, batched sparse operators,
exponential time differencing (ETDRK4) for a diagonal stiff part. It sees operators and
vectors, never a PDE; it imports nothing else of datagen."""
