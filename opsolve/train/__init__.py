"""Training and evaluation of operators from configs (``opsolve train`` / ``opsolve evaluate``).

- :mod:`~opsolve.train.config`: the config schema (pydantic, one-line errors);
- :mod:`~opsolve.models.registry`: model name -> builder (``fno``, ``tfno``, ``mgno``;
  :func:`~opsolve.models.registry.register_model` adds more);
- :mod:`~opsolve.train.losses`: per-sample relative L2 / H1 (neuraloperator's norms);
- :mod:`~opsolve.train.trainer`: the epoch loop, checkpoints, metrics, DDP;
- :mod:`~opsolve.train.distributed`: rank-consistent batch plans and reductions;
- :mod:`~opsolve.train.checkpoint`: atomic checkpoints with RNG states.

Kept free of imports so that ``opsolve train`` validates a config before loading torch.
"""
