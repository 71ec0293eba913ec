"""The one exception type for mistakes a user can fix (bad config, bad file, bad path).

Command-line entry points print its message as a single line and exit non-zero, without a
traceback. Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An input error with a one-line message naming what is wrong and what is allowed."""


class SolverFailure(Exception):
    """A solve produced NaN/inf or missed its tolerance; the message names the sample.

    Work finished before it is kept: fixing the cause and re-running resumes.
    """


class RankLost(Exception):
    """Under ``torchrun``, another rank of the job stopped (killed, crashed, its node lost)
    while this one waited for it. Finished work units are kept: re-running resumes."""
