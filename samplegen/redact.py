"""Credentials written into a storage URI, hidden wherever samplegen prints or records the URI.

pyarrow reads an S3 key pair from a URI's user part (`s3://KEY:SECRET@bucket/path`), and a
study or run keeps its storage URI in its records and names it in its messages. Those records are
shared (a run folder, a study on a bucket, a CI log), the credentials must not travel with them.
The URI itself is used unredacted wherever it opens a file system.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

HIDDEN = "***"

# scheme://user[:password]@host. A URI must percent-encode "/" and "@" inside a password, so the
# user part is everything from the scheme to the first "@" with no "/" before it.
_USER_PART = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s\"'<>]+@")
# Options that hold a credential when a URI carries one in its query (?secret_key=...).
_SECRET_OPTION = re.compile(
    r"(?P<name>[?&][^=&\s\"'<>]*(?:secret|token|password|passwd|credential|access_key|api_key)"
    r"[^=&\s\"'<>]*=)[^&#\s\"'<>]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with the user part and credential options of every URI in it replaced by ***.

    Applies to a URI alone and to a message that names one; other text is returned unchanged.
    """
    if "://" not in text:
        return text
    text = _USER_PART.sub(lambda m: f"{m['scheme']}{HIDDEN}@", text)
    return _SECRET_OPTION.sub(lambda m: f"{m['name']}{HIDDEN}", text)


class RedactingStream:
    """A text stream that redacts what is written to it before passing it on (the console)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write `text`, redacted; returns the length of `text`, as print() expects."""
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of `lines`, redacted."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # flush, fileno, isatty, encoding...: the stream's own.
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacted_console() -> Iterator[None]:
    """Within it, everything printed to sys.stdout and sys.stderr is redacted.

    Output written to the file descriptors directly (Ray's workers, a logging handler made before
    it began with the stream it held then) is not.
    """
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def redact_values(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(item) for item in value]
    return value
