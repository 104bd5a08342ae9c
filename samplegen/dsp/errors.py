"""The error raised for every audio file (or array) the codec cannot use."""

from __future__ import annotations

from samplegen.errors import SamplegenError

AUDIO_ERROR_REASONS: tuple[str, ...] = (
    "unreadable",
    "empty",
    "too_short",
    "silent",
    "non_finite",
    "unsupported",
)


class AudioError(SamplegenError, ValueError):
    """An audio input the codec cannot use.

    `path` names the file (or the name given for in-memory audio), `reason` is one of
    `AUDIO_ERROR_REASONS`, and the message reads ``"<path>: <reason>: <detail>"``.
    """

    def __init__(self, path: str, reason: str, detail: str) -> None:
        if reason not in AUDIO_ERROR_REASONS:
            raise ValueError(f"AudioError reason {reason!r} is not one of {AUDIO_ERROR_REASONS}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}: {detail}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str, str]]:
        # Ray and multiprocessing pickle exceptions across processes; the default reduce would call
        # __init__ with the single formatted message.
        return (type(self), (self.path, self.reason, self.detail))
