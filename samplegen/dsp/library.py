"""The built-in sample library: one-note samples of every General MIDI program, rendered with FluidSynth.

Each render is dry (no reverb or chorus), 2 s, mono, 44.1 kHz, at its real level (never normalised:
datasets do that), written as a 24-bit WAV. Renders that stay below -60 dBFS (e.g. FluidR3's
Contrabass above its key range) are listed as silent and not kept.

Determinism: FluidSynth 2.3 does not reset a voice slot's output gain ramp when the slot is reused,
so the first 64 frames of a note depend on which notes used the same slots before it. Before every
note a fixed "priming" chord fills the slots with a known state, which makes every render depend only
on its own program, note and velocity: a library rendered twice, or in parts, gives identical files.
"""

from __future__ import annotations

import csv
import ctypes
import fcntl
import glob
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.atomic import write_text_atomic
from samplegen.dsp.audio import write_wav
from samplegen.dsp.categories import (
    GM_PROGRAM_NAMES,
    category_from_gm_program,
    gm_family,
)
from samplegen.errors import SamplegenError

SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")
# Known names: (file, Debian package that installs it).
SOUNDFONTS: dict[str, tuple[Path, str]] = {
    "fluidr3": (SOUNDFONT_DIR / "FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "timgm6mb": (SOUNDFONT_DIR / "TimGM6mb.sf2", "timgm6mb-soundfont"),
    # GS variation tones only (no bank 0): samplegen.dsp.variations renders from it.
    "fluidr3-gs": (SOUNDFONT_DIR / "FluidR3_GS.sf2", "fluid-soundfont-gs"),
}
SOUNDFONT_SUFFIXES = (".sf2", ".sf3")

DEFAULT_NOTES: tuple[str, ...] = ("C3", "C4", "C5")
# Three velocities give 1,155 kept FluidR3 samples (128 programs x 3 notes + the drum kit, less
# Contrabass at C4/C5), the closest round choice to the original library's 1,017 files.
DEFAULT_VELOCITIES: tuple[int, ...] = (64, 100, 127)

DRUM_BANK = 128
DRUM_CHANNEL = 9
DRUM_SLUG = "standard_kit"
DRUM_NAME = "Standard Kit"

METADATA_COLUMNS: tuple[str, ...] = (
    "file",
    "program",
    "program_name",
    "family",
    "category",
    "note",
    "velocity",
    "peak",
    "bank",
    "midi_key",
)
LIBRARY_FORMAT = 1

_BLOCK = 64  # FluidSynth's internal block size: every note starts on a block boundary.
_PRIME_VOICES = 32
_FLUSH_FRAMES = 512
_NOTE_RE = re.compile(r"(?P<letter>[A-Ga-g])(?P<accidental>#|s|b)?(?P<octave>-?\d+)")
_PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_SLUG_RE = re.compile(r"[^a-z0-9]+")


class LibraryError(SamplegenError):
    """A bad library setting, a missing SoundFont or a renderer that cannot run."""


# ----------------------------------------------------------------------------- settings


def note_to_midi(name: str) -> int:
    """MIDI key of a note name: ``C4`` is 60, ``C3`` 48, ``C#4``/``Cs4``/``Db4`` 61."""
    match = _NOTE_RE.fullmatch(str(name).strip())
    if not match:
        raise LibraryError(f"notes: {name!r} is not a note name (expected e.g. C3, C#4, Db5)")
    shift = {"#": 1, "s": 1, "b": -1}.get(match.group("accidental") or "", 0)
    key = (int(match.group("octave")) + 1) * 12 + _PITCH_CLASSES[match.group("letter").upper()]
    key += shift
    if not 0 <= key <= 127:
        raise LibraryError(f"notes: {name!r} is MIDI key {key}, outside 0-127")
    return key


def midi_to_note(key: int) -> str:
    """Canonical (sharp) name of a MIDI key: 60 -> ``C4``."""
    return f"{_SHARP_NAMES[key % 12]}{key // 12 - 1}"


def slug(text: str) -> str:
    """Lower-case ASCII words joined by underscores: "Acoustic Guitar (nylon)" -> acoustic_guitar_nylon."""
    return _SLUG_RE.sub("_", text.lower()).strip("_")


@dataclass(frozen=True)
class LibrarySettings:
    """Everything that decides a library's content (its hash names the cache folder)."""

    soundfont: str
    notes: tuple[str, ...] = DEFAULT_NOTES
    velocities: tuple[int, ...] = DEFAULT_VELOCITIES
    include_drums: bool = True
    duration: float = 2.0
    sample_rate: int = 44100
    programs: tuple[int, ...] = tuple(range(128))
    hold_fraction: float = 0.75  # note-off after 1.5 s of a 2 s render
    gain: float = 1.0
    fade_out: float = 0.01  # seconds; renders still sounding at the end do not click
    silence_dbfs: float = -60.0
    subtype: str = "PCM_24"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples become lists)."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def digest(self) -> str:
        """A short hash of the settings."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def make_settings(
    soundfont: str | os.PathLike[str] | None = None,
    notes: Sequence[str] = DEFAULT_NOTES,
    velocities: Sequence[int] = DEFAULT_VELOCITIES,
    include_drums: bool = True,
    duration: float = 2.0,
    sample_rate: int = 44100,
    programs: Sequence[int] | None = None,
) -> LibrarySettings:
    """Checked settings; raises LibraryError naming the bad setting."""
    path = find_soundfont(soundfont)
    if isinstance(notes, str):
        notes = [n for n in notes.split(",") if n.strip()]
    keys = [note_to_midi(n) for n in notes]
    if not keys:
        raise LibraryError("notes: at least one note is needed")
    if len(set(keys)) != len(keys):
        raise LibraryError(f"notes: {list(notes)} names the same key twice")
    vels: list[int] = []
    for v in velocities:
        if isinstance(v, bool) or int(v) != v or not 1 <= int(v) <= 127:
            raise LibraryError(f"velocities: {v!r} is not a MIDI velocity (an integer 1-127)")
        vels.append(int(v))
    if not vels:
        raise LibraryError("velocities: at least one velocity is needed")
    if len(set(vels)) != len(vels):
        raise LibraryError(f"velocities: {vels} repeats a velocity")
    if not (
        isinstance(duration, (int, float)) and math.isfinite(duration) and 0.1 <= duration <= 60
    ):
        raise LibraryError(f"duration: {duration!r} is not a length in seconds between 0.1 and 60")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate:
        raise LibraryError(f"sample_rate: {sample_rate!r} is not an integer")
    if not 8000 <= int(sample_rate) <= 96000:
        raise LibraryError(f"sample_rate: {sample_rate} is outside FluidSynth's 8000-96000 Hz")
    progs = tuple(range(128)) if programs is None else tuple(programs)
    for p in progs:
        if isinstance(p, bool) or int(p) != p or not 0 <= int(p) <= 127:
            raise LibraryError(f"programs: {p!r} is not a GM program (an integer 0-127)")
    if len(set(progs)) != len(progs):
        raise LibraryError(f"programs: {list(progs)} repeats a program")
    return LibrarySettings(
        soundfont=str(path),
        notes=tuple(midi_to_note(k) for k in keys),
        velocities=tuple(vels),
        include_drums=bool(include_drums),
        duration=float(duration),
        sample_rate=int(sample_rate),
        programs=tuple(int(p) for p in progs),
    )


def find_soundfont(name_or_path: str | os.PathLike[str] | None = None) -> Path:
    """The SoundFont file for a known name ('fluidr3', the default, or 'timgm6mb') or a path.

    Raises LibraryError naming the file (and the Debian package that provides it) when it is missing
    or not a .sf2/.sf3 file.
    """
    text = "fluidr3" if name_or_path is None else str(name_or_path)
    known = SOUNDFONTS.get(text.lower())
    if known is not None:
        path, package = known
        if not path.is_file():
            raise LibraryError(
                f"soundfont {text}: {path} is missing; install it with "
                f"`sudo apt-get install {package}`"
            )
        return path
    path = Path(text).expanduser()
    if path.suffix.lower() not in SOUNDFONT_SUFFIXES:
        names = ", ".join(SOUNDFONTS)
        raise LibraryError(
            f"soundfont {text}: not a known name ({names}) nor a .sf2/.sf3 file "
            f"(the Debian packages fluid-soundfont-gm and timgm6mb-soundfont provide General MIDI ones)"
        )
    if not path.is_file():
        raise LibraryError(
            f"soundfont {path}: no such file (for the built-in ones install fluid-soundfont-gm "
            f"or timgm6mb-soundfont and pass fluidr3 or timgm6mb)"
        )
    return path.resolve()


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RenderedNote:
    """One render: a kept file (`file` set) or a silent one (`file` empty)."""

    file: str
    program: int | None  # None for the drum kit
    bank: int
    program_name: str
    family: str
    category: str
    note: str
    midi_key: int
    velocity: int
    peak: float

    @property
    def peak_dbfs(self) -> float:
        """Peak level in dB relative to full scale (-inf for digital silence)."""
        return 20.0 * math.log10(self.peak) if self.peak > 0 else -math.inf


@dataclass(frozen=True)
class LibraryReport:
    """What `render_library` did."""

    out_dir: Path
    soundfont: Path
    settings: LibrarySettings
    samples: tuple[RenderedNote, ...]
    silent: tuple[RenderedNote, ...]
    missing_presets: tuple[str, ...] = ()
    seconds: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def rendered(self) -> int:
        """Renders made (kept + silent)."""
        return len(self.samples) + len(self.silent)

    @property
    def kept(self) -> int:
        """Files written."""
        return len(self.samples)


# ----------------------------------------------------------------------------- rendering


class _Renderer:
    """A FluidSynth synthesizer with no audio driver, rendering float32 stereo on demand."""

    def __init__(self, soundfont: Path, settings: LibrarySettings) -> None:
        try:
            import fluidsynth
        except (ImportError, OSError) as exc:  # pyfluidsynth raises ImportError without the .so
            raise LibraryError(
                f"renderer: FluidSynth is unavailable ({exc}); install the Debian package "
                f"libfluidsynth3 and the Python package pyfluidsynth"
            ) from exc
        self._fs = fluidsynth
        # A private prototype of the C function, so the shared handle's attributes stay untouched.
        proto = ctypes.CFUNCTYPE(
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        )
        self._write_float = proto(("fluid_synth_write_float", fluidsynth._fl))
        self.settings = settings
        self.synth = fluidsynth.Synth(
            gain=float(settings.gain),
            samplerate=int(settings.sample_rate),
            channels=16,
            **{
                "synth.reverb.active": 0,
                "synth.chorus.active": 0,
                "synth.cpu-cores": 1,
                "synth.polyphony": 256,
            },
        )
        self.sfid = self.synth.sfload(str(soundfont))
        if self.sfid < 0:
            self.synth.delete()
            raise LibraryError(f"soundfont {soundfont}: FluidSynth cannot load it")
        self._prime_preset = self._first_preset()

    def close(self) -> None:
        self.synth.delete()

    def has_preset(self, bank: int, preset: int) -> bool:
        return self.synth.sfpreset_name(self.sfid, bank, preset) is not None

    def _first_preset(self) -> tuple[int, int]:
        for bank, preset in [(0, p) for p in range(128)] + [(DRUM_BANK, p) for p in range(128)]:
            if self.has_preset(bank, preset):
                return bank, preset
        raise LibraryError(f"soundfont {self.settings.soundfont}: holds no General MIDI preset")

    def _render(self, frames: int) -> np.ndarray:
        buf = np.zeros((frames, 2), dtype=np.float32)
        ptr = buf.ctypes.data
        if self._write_float(self.synth.synth, frames, ptr, 0, 2, ptr, 1, 2) != 0:
            raise RuntimeError("fluid_synth_write_float failed")
        return buf

    def _prime(self, voices: int) -> None:
        """Fill the first `voices` voice slots with a fixed note, then silence them."""
        s = self.synth
        s.system_reset()
        bank, preset = self._prime_preset
        s.program_select(0, self.sfid, bank, preset)
        key = 0
        while s.get_active_voice_count() < voices and key < 128:
            s.noteon(0, key, 100)
            key += 1
        self._render(_BLOCK)
        s.all_sounds_off(0)
        self._render(_BLOCK)
        if s.get_active_voice_count():
            raise RuntimeError("priming voices did not stop")

    def note(self, channel: int, bank: int, preset: int, key: int, velocity: int) -> np.ndarray:
        """One note as mono float32 of `duration` seconds; nothing of it reaches the next note."""
        st = self.settings
        n = int(round(st.duration * st.sample_rate))
        total = -(-n // _BLOCK) * _BLOCK
        hold = max(_BLOCK, int(st.duration * st.hold_fraction * st.sample_rate) // _BLOCK * _BLOCK)
        hold = min(hold, total)
        voices = _PRIME_VOICES
        while True:
            self._prime(voices)
            s = self.synth
            s.system_reset()
            if s.program_select(channel, self.sfid, bank, preset) != 0:
                raise RuntimeError(f"program_select({bank}, {preset}) failed")
            s.noteon(channel, key, velocity)
            used = s.get_active_voice_count()
            if used <= voices:
                break
            # More voices than primed slots: silence this attempt and prime more slots.
            s.all_sounds_off(channel)
            self._render(_FLUSH_FRAMES)
            voices = min(256, 2 * used)
        first = self._render(hold)
        s.noteoff(channel, key)
        rest = self._render(total - hold)
        s.all_sounds_off(channel)
        self._render(_FLUSH_FRAMES)
        if s.get_active_voice_count():
            raise RuntimeError("voices still sounding after all_sounds_off")
        stereo = np.concatenate([first, rest])[:n]
        mono = (stereo[:, 0] + stereo[:, 1]) * np.float32(0.5)
        fade = int(round(st.fade_out * st.sample_rate))
        if fade > 1:
            ramp = 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
            mono[-fade:] *= ramp.astype(np.float32)
        return mono


@contextmanager
def _renderer(soundfont: Path, settings: LibrarySettings) -> Iterator[_Renderer]:
    r = _Renderer(soundfont, settings)
    try:
        yield r
    finally:
        r.close()


def _jobs(settings: LibrarySettings) -> list[tuple[int | None, int, int, str, str, str, str]]:
    """(program, bank, channel, name, family, category, file prefix) in render order."""
    jobs: list[tuple[int | None, int, int, str, str, str, str]] = []
    for p in settings.programs:
        name = GM_PROGRAM_NAMES[p]
        prefix = f"p{p:03d}_{slug(name)}"
        jobs.append((p, 0, 0, name, gm_family(p), category_from_gm_program(p), prefix))
    if settings.include_drums:
        family = gm_family(0, drum=True)
        category = category_from_gm_program(0, drum=True)
        jobs.append(
            (None, DRUM_BANK, DRUM_CHANNEL, DRUM_NAME, family, category, f"drums_{DRUM_SLUG}")
        )
    return jobs


def soundfont_identity(path: Path, with_hash: bool = True) -> dict[str, Any]:
    """Path, size, mtime and (optionally) sha256 of a SoundFont."""
    st = path.stat()
    out: dict[str, Any] = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if with_hash:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out["sha256"] = h.hexdigest()
    return out


def _metadata_csv(samples: Sequence[RenderedNote]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(METADATA_COLUMNS)
    for s in samples:
        w.writerow(
            [
                s.file,
                "" if s.program is None else s.program,
                s.program_name,
                s.family,
                s.category,
                s.note,
                s.velocity,
                f"{s.peak:.6f}",
                s.bank,
                s.midi_key,
            ]
        )
    return out.getvalue()


def _fluidsynth_version() -> str:
    try:
        import fluidsynth

        fn = ctypes.CFUNCTYPE(ctypes.c_char_p)(("fluid_version_str", fluidsynth._fl))
        return (fn() or b"").decode()
    except (ImportError, OSError, AttributeError):
        return "unknown"


# Written first into a folder a render starts in, so an interrupted render's folder is still known
# as a library's (its notes may be removed by the next render there).
RENDER_MARK = ".samplegen-library"


def render_library(
    out_dir: str | os.PathLike[str],
    soundfont: str | os.PathLike[str] | None = None,
    notes: Sequence[str] = DEFAULT_NOTES,
    velocities: Sequence[int] = DEFAULT_VELOCITIES,
    include_drums: bool = True,
    duration: float = 2.0,
    sample_rate: int = 44100,
    programs: Sequence[int] | None = None,
) -> LibraryReport:
    """Render every GM program (bank 0; `programs` picks a subset) and the standard drum kit
    (bank 128, preset 0) at each note and velocity into `out_dir`.

    Writes `pNNN_<program>_<note>_v<velocity>.wav` / `drums_standard_kit_<note>_v<velocity>.wav`
    (24-bit, mono, real level), `metadata.csv` and, last, `library.json` (so a folder with
    library.json is complete). Renders quieter than -60 dBFS are listed as silent, not written;
    presets the SoundFont lacks are listed as missing. Deterministic: the same settings give
    byte-identical WAVs and metadata.csv.
    """
    settings = make_settings(
        soundfont, notes, velocities, include_drums, duration, sample_rate, programs
    )
    path = Path(settings.soundfont)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marks = ("library.json", "metadata.csv", RENDER_MARK)
    if any(out.iterdir()) and not any((out / m).is_file() for m in marks):
        # The earlier render's notes are removed below: never files that no render of ours made.
        raise LibraryError(
            f"{out}: this folder holds other files and no library rendered here; "
            "give an empty or new folder for the library"
        )
    (out / RENDER_MARK).write_text("a library is rendered here (samplegen library)\n")
    (out / "library.json").unlink(missing_ok=True)  # an interrupted re-render must not look done
    # Notes of an earlier render here, with other settings, would be in the folder but not in
    # metadata.csv: a dataset would take them for files of their own, grouped by name, apart
    # from their program's notes (and maybe in another split).
    for old in (*out.glob("p[0-9][0-9][0-9]_*.wav"), *out.glob("drums_standard_kit_*.wav")):
        old.unlink()
    threshold = 10.0 ** (settings.silence_dbfs / 20.0)
    keys = [note_to_midi(n) for n in settings.notes]
    kept: list[RenderedNote] = []
    silent: list[RenderedNote] = []
    missing: list[str] = []
    t0 = time.perf_counter()
    with _renderer(path, settings) as r:
        for program, bank, channel, name, family, category, prefix in _jobs(settings):
            preset = 0 if program is None else program
            if not r.has_preset(bank, preset):
                missing.append(f"bank {bank} preset {preset} ({name})")
                continue
            for key in keys:
                note = midi_to_note(key)
                for vel in settings.velocities:
                    mono = r.note(channel, bank, preset, key, vel)
                    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
                    file = f"{prefix}_{note.replace('#', 's')}_v{vel}.wav"
                    item = RenderedNote(
                        file, program, bank, name, family, category, note, key, vel, peak
                    )
                    if not peak >= threshold:
                        silent.append(replace(item, file=""))
                        continue
                    write_wav(out / file, mono, settings.sample_rate, subtype=settings.subtype)
                    kept.append(item)
    seconds = time.perf_counter() - t0
    counts = {
        "rendered": len(kept) + len(silent),
        "kept": len(kept),
        "silent": len(silent),
        "missing_presets": len(missing),
        "by_category": dict(sorted(Counter(s.category for s in kept).items())),
        "by_velocity": {str(v): sum(s.velocity == v for s in kept) for v in settings.velocities},
    }
    write_text_atomic(out / "metadata.csv", _metadata_csv(kept))
    info = {
        "format": LIBRARY_FORMAT,
        "soundfont": soundfont_identity(path),
        "fluidsynth": _fluidsynth_version(),
        "settings": settings.to_dict(),
        "settings_digest": settings.digest(),
        "counts": counts,
        "silent": [
            {
                "program": s.program,
                "program_name": s.program_name,
                "note": s.note,
                "velocity": s.velocity,
                "peak": s.peak,
                "peak_dbfs": None if s.peak <= 0 else round(s.peak_dbfs, 2),
            }
            for s in silent
        ],
        "missing_presets": missing,
        "render_seconds": round(seconds, 3),
    }
    write_text_atomic(out / "library.json", json.dumps(info, indent=2) + "\n")
    (out / RENDER_MARK).unlink(missing_ok=True)  # library.json marks the folder from now on
    return LibraryReport(
        out_dir=out,
        soundfont=path,
        settings=settings,
        samples=tuple(kept),
        silent=tuple(silent),
        missing_presets=tuple(missing),
        seconds=seconds,
        counts=counts,
    )


# ----------------------------------------------------------------------------- cache


def default_cache_root() -> Path:
    """$SAMPLEGEN_CACHE/library, or ~/.cache/samplegen/library."""
    base = os.environ.get("SAMPLEGEN_CACHE") or str(Path.home() / ".cache" / "samplegen")
    return Path(base).expanduser() / "library"


def library_is_complete(folder: Path, settings: LibrarySettings) -> bool:
    """Whether `folder` holds a finished render of exactly these settings and this SoundFont."""
    try:
        info = json.loads((folder / "library.json").read_text(encoding="utf-8"))
        rows = list(
            csv.DictReader((folder / "metadata.csv").read_text(encoding="utf-8").splitlines())
        )
    except (OSError, ValueError):
        return False
    if info.get("format") != LIBRARY_FORMAT or info.get("settings") != settings.to_dict():
        return False
    current = soundfont_identity(Path(settings.soundfont), with_hash=False)
    recorded = info.get("soundfont", {})
    if any(recorded.get(k) != current[k] for k in ("path", "size", "mtime_ns")):
        return False
    if len(rows) != info.get("counts", {}).get("kept"):
        return False
    return all((folder / row["file"]).is_file() for row in rows)


def ensure_library(
    name: str | os.PathLike[str] = "fluidr3",
    cache_dir: str | os.PathLike[str] | None = None,
    notes: Sequence[str] = DEFAULT_NOTES,
    velocities: Sequence[int] = DEFAULT_VELOCITIES,
    include_drums: bool = True,
    duration: float = 2.0,
    sample_rate: int = 44100,
    programs: Sequence[int] | None = None,
) -> Path:
    """The library folder for a SoundFont (name or path) and settings, rendered on first use.
    `programs`: the GM programs to render (default every one).

    The folder is `<cache>/<soundfont stem>-<settings hash>` where the cache is `cache_dir`, else
    `default_cache_root()`. A complete render of the same settings and SoundFont is reused; anything
    else is rendered into a temporary folder that is renamed into place only when finished, under a
    lock so concurrent callers render once.
    """
    settings = make_settings(
        name, notes, velocities, include_drums, duration, sample_rate, programs
    )
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    stem = slug(Path(settings.soundfont).stem) or "soundfont"
    return render_cached(
        root / f"{stem}-{settings.digest()}",
        lambda folder: library_is_complete(folder, settings),
        lambda tmp: render_library(
            tmp,
            settings.soundfont,
            settings.notes,
            settings.velocities,
            settings.include_drums,
            settings.duration,
            settings.sample_rate,
            settings.programs,
        ),
    )


def render_cached(
    target: Path, complete: Callable[[Path], bool], render: Callable[[Path], object]
) -> Path:
    """`target` once `complete(target)`, else rendered there by `render(folder)`: into a temporary
    folder beside it, renamed into place only when finished, under a lock so concurrent callers
    render once. Raises LibraryError when the cache folder cannot be made."""
    if complete(target):
        return target
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LibraryError(f"cache_dir {root}: cannot create it ({exc.strerror or exc})") from exc
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete(target):  # another process finished it meanwhile
            return target
        # Under the lock no other render is under way: these are what killed renders left.
        for stale in (
            *root.glob(f".{glob.escape(target.name)}.*.tmp"),
            *root.glob(f".{glob.escape(target.name)}.*.old"),
        ):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=root))
        try:
            render(tmp)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=root))
                os.replace(target, old / "library")
                shutil.rmtree(old, ignore_errors=True)
            tmp.chmod(0o755)  # mkdtemp makes it private; the library is ordinary data
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
