"""Errors the CLI turns into one-line messages and documented exit codes.

Code below the CLI raises these instead of printing or exiting, so every failure
a user can fix reaches them as a single sentence, never a traceback.
"""


class CvtoolError(Exception):
    """Base class; ``exit_code`` is what the process exits with."""

    exit_code = 1


class InputError(CvtoolError):
    """Bad usage, config, data file or checkpoint: something the user must fix (exit 2)."""

    exit_code = 2


class MissingResource(CvtoolError):
    """A dataset or weight file that is absent and cannot be fetched (exit 3)."""

    exit_code = 3


class Interrupted(CvtoolError):
    """Training stopped by SIGINT/SIGTERM after saving a resumable checkpoint (exit 130).

    ``resume`` is what continues the run (the CLI line, or the Python call from cvtool.train),
    None when nothing was saved to continue from.
    """

    exit_code = 130

    def __init__(self, message: str = "", resume: str | None = None):
        super().__init__(message)
        self.resume = resume


class GateFailed(CvtoolError):
    """A quality gate failed: a metric past its bound or a drop over its tolerance (exit 4).

    What the run or export wrote is kept; the message names each failed gate.
    """

    exit_code = 4
