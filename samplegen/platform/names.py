"""What a sample's file name says: its note, its velocity and the instrument group it belongs to.

File names carry notes as scientific pitch tokens (``C3``, ``C#4``, ``Db5``) and velocities as
``v100`` / ``vel127`` tokens. Removing both leaves the instrument's name, which is the group used to
keep every note of one instrument in the same split.
"""

from __future__ import annotations

import re

_PITCH_CLASSES: dict[str, int] = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARP_NAMES: tuple[str, ...] = (
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
)  # fmt: skip

# A note letter may follow a lower-case letter ("PianoC3", camel case) but not an upper-case letter
# or a digit ("TR808", "ABC3"); a lower-case note letter must start a token ("piano_c3").
_NOTE_RE = re.compile(
    r"(?:(?<![A-Z0-9#])(?P<upper>[A-G])|(?<![A-Za-z0-9#])(?P<lower>[a-g]))"
    r"(?P<accidental>#|b|s(?=-?\d))?(?P<octave>-?[0-9])(?![0-9])"
)
_VELOCITY_RE = re.compile(
    r"(?<![A-Za-z0-9])(?:velocity|vel|v)[_-]?(?P<value>[0-9]{1,3})(?![0-9])", re.I
)
_SEPARATORS_RE = re.compile(r"[^a-z0-9]+")
# Tokens that name how one instrument's note was played or recorded, not the instrument: sample
# libraries name its dynamics (Violin.arco.ff.C4 beside Violin.arco.pp.C4), round robins
# (Piano_C4_rr2), microphone positions (Piano_C4_close, Piano_C4_room) and zero-padded MIDI note
# numbers (Piano_060). Left in the group, each would be an instrument of its own, and one
# instrument's notes could land in train and in test. Other numbers stay: "Electric Piano 2" and
# "Flute 10" name instruments.
_PLAYING_TOKENS = frozenset(
    {"pppp", "ppp", "pp", "p", "mp", "mf", "f", "ff", "fff", "ffff", "sfz", "fp"}
    | {"close", "room", "far", "near", "mid", "ambient", "amb", "overhead", "oh", "mono", "stereo"}
)
_PLAYING_RE = re.compile(r"^(?:rr\d*|0\d\d)$")
# Bumped when group_from_name changes: datasets it now groups otherwise are prepared again.
NAME_GROUPING_VERSION = 2


def note_to_midi(note: str) -> int:
    """MIDI number of a note name such as ``C4`` (60), ``C#4``/``Db4`` (61) or ``Cs4``.

    Raises ValueError for anything else.
    """
    match = _NOTE_RE.fullmatch(note.strip())
    if not match:
        raise ValueError(f"not a note name: {note!r} (expected e.g. C3, C#4, Db5)")
    return _midi_from_match(match)


def midi_to_note(midi: int) -> str:
    """Canonical (sharp) name of a MIDI note number: 60 -> ``C4``."""
    return f"{_SHARP_NAMES[midi % 12]}{midi // 12 - 1}"


def midi_to_hz(midi: int) -> float:
    """Equal-tempered frequency of a MIDI note (A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def _midi_from_match(match: re.Match[str]) -> int:
    letter = (match.group("upper") or match.group("lower")).upper()
    accidental = match.group("accidental") or ""
    shift = {"#": 1, "s": 1, "b": -1}.get(accidental, 0)
    return (int(match.group("octave")) + 1) * 12 + _PITCH_CLASSES[letter] + shift


def note_from_name(name: str) -> int | None:
    """MIDI note named in a file name (the last note token wins), or None when it names none."""
    matches = list(_NOTE_RE.finditer(name))
    return _midi_from_match(matches[-1]) if matches else None


def velocity_from_name(name: str) -> int | None:
    """Velocity named in a file name (``v100``, ``vel_127``), or None."""
    matches = [m for m in _VELOCITY_RE.finditer(name) if int(m.group("value")) <= 127]
    return int(matches[-1].group("value")) if matches else None


def group_from_name(stem: str) -> str:
    """Instrument group of a file name: note, velocity and playing tokens (dynamics, round robins,
    microphone positions, zero-padded 3-digit numbers) removed, lower case, ``_``-joined.

    ``Grand Piano_C#4_v100``, ``grand-piano-C3`` and ``Grand_Piano_ff_rr2_C4`` all give
    ``grand_piano``; ``Electric Piano 1`` and ``Electric Piano 2`` stay apart.
    """
    without = _VELOCITY_RE.sub(" ", _NOTE_RE.sub(" ", stem))
    tokens = [
        t
        for t in _SEPARATORS_RE.split(without.lower())
        if t and t not in _PLAYING_TOKENS and not _PLAYING_RE.match(t)
    ]
    return "_".join(tokens) or "unnamed"


def regrouped(stem: str) -> bool:
    """Whether group_from_name groups `stem` otherwise than its first version did (note and
    velocity tokens removed only): such a dataset's fingerprint names the grouping version."""
    without = _VELOCITY_RE.sub(" ", _NOTE_RE.sub(" ", stem))
    first = _SEPARATORS_RE.sub("_", without.lower()).strip("_") or "unnamed"
    return first != group_from_name(stem)


def parse_notes(spec: str | None) -> tuple[int, ...] | None:
    """Parse a note list such as ``"C3,C4,C5"`` into MIDI numbers; ``None``/``"all"`` keeps every note.

    Raises ValueError naming the bad entry.
    """
    if spec is None or spec.strip().lower() in ("", "all", "any"):
        return None
    return tuple(note_to_midi(part) for part in spec.split(",") if part.strip())
