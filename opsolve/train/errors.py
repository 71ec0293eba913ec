"""Training failures that are not user errors but still end a run with one clear line."""


class TrainingDiverged(Exception):
    """The loss or a validation metric became NaN/inf; the message names epoch and step.

    Raised before the optimizer steps and before anything is saved, so the last good
    checkpoint (``last.pt`` of the previous epoch) is left untouched.
    """
