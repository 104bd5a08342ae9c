"""The error type every user-facing failure derives from.

The command line prints a `SamplegenError` as one line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class SamplegenError(Exception):
    """A failure caused by the user's input or environment, with a message that says what and why."""
