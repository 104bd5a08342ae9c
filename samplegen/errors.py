"""The error type every user-facing failure derives from.

The command line prints a `SamplegenError` as one line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class SamplegenError(Exception):
    """A failure caused by the user's input or environment, with a message that says what and why."""


class Interrupted(SamplegenError):
    """Work stopped by Ctrl-C or SIGTERM before it finished; the message says how to continue it.

    The command line exits with 130, as a shell reports a process that Ctrl-C ended.
    """
