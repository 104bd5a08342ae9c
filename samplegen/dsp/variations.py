"""Variation presets of General MIDI programs, rendered as extra training notes.

GS SoundFonts hold, beside bank 0's 128 GM programs, variation tones filed under the same program
numbers in other banks: FluidR3_GM.sf2 has 30 in banks 8, 9 and 16 ("Detuned EP 1", "Hawaiian
Guitar", "Synth Bass 3"...), and Debian's fluid-soundfont-gs (FluidR3_GS.sf2) 33 more, mostly
sound-effect variations in banks 1-8. They are other instruments, which is what a model of
instruments it never saw needs most (RESULTS.md "How validation grows with the training
instruments"). A variation belongs with its program: render only variations of programs that a
dataset trains on, or the model learns relatives of its validation and test instruments.

Renders use the library's settings and priming (samplegen.dsp.library), so they are deterministic.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.atomic import write_text_atomic
from samplegen.dsp.audio import write_wav
from samplegen.dsp.categories import category_from_gm_program, gm_family
from samplegen.dsp.library import (
    DEFAULT_NOTES,
    DRUM_BANK,
    LibraryError,
    _renderer,
    default_cache_root,
    find_soundfont,
    make_settings,
    midi_to_note,
    note_to_midi,
    render_cached,
    slug,
    soundfont_identity,
)

# The SoundFonts whose variation banks the built-in FluidR3 library draws on, by library name.
FLUIDR3_VARIATIONS: tuple[str, ...] = ("fluidr3", "fluidr3-gs")
# One velocity: the library's three are near-copies after normalisation, and a variation should
# weigh no more than one of the library's notes.
VARIATION_VELOCITY = 100
VARIATIONS_JSON = "variations.json"
VARIATIONS_FORMAT = 1
COLUMNS = ("file", "program", "bank", "program_name", "family", "category", "note", "velocity")


@dataclass(frozen=True)
class VariationSettings:
    """What decides a variations folder's content (its hash names the cache folder)."""

    soundfonts: tuple[str, ...]  # resolved paths
    programs: tuple[int, ...]
    notes: tuple[str, ...] = DEFAULT_NOTES
    velocity: int = VARIATION_VELOCITY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def digest(self) -> str:
        """A short hash of the settings."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Variation:
    """One rendered note of a variation preset."""

    file: str
    program: int
    bank: int
    program_name: str
    family: str
    category: str
    note: str
    velocity: int


def variation_settings(
    programs: Sequence[int],
    notes: Sequence[str] = DEFAULT_NOTES,
    soundfonts: Sequence[str] = FLUIDR3_VARIATIONS,
    velocity: int = VARIATION_VELOCITY,
) -> VariationSettings:
    """Checked settings; raises LibraryError naming a missing SoundFont (and its package)."""
    progs = sorted({int(p) for p in programs})
    if any(not 0 <= p <= 127 for p in progs):
        raise LibraryError(f"variations: programs {progs} are not all GM programs (0-127)")
    if not 1 <= int(velocity) <= 127:
        raise LibraryError(f"variations: velocity {velocity} is not a MIDI velocity (1-127)")
    keys = [note_to_midi(n) for n in notes]
    return VariationSettings(
        soundfonts=tuple(str(find_soundfont(s)) for s in soundfonts),
        programs=tuple(progs),
        notes=tuple(midi_to_note(k) for k in keys),
        velocity=int(velocity),
    )


def render_variations(
    out_dir: str | os.PathLike[str], settings: VariationSettings
) -> list[Variation]:
    """Render every variation preset (banks 1-127) of `settings.programs` in each SoundFont.

    Writes `<soundfont>_bBBB_pPPP_<preset>_<note>.wav` (24-bit, mono, real level), `metadata.csv`
    and, last, `variations.json`. Renders below the library's silence level are left out and listed
    there. Presets absent from a SoundFont are simply not variations of it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / VARIATIONS_JSON).unlink(missing_ok=True)
    kept: list[Variation] = []
    silent: list[str] = []
    for path in map(Path, settings.soundfonts):
        lib = make_settings(path, settings.notes, [settings.velocity], include_drums=False)
        threshold = 10.0 ** (lib.silence_dbfs / 20.0)
        with _renderer(path, lib) as r:
            for bank in range(1, DRUM_BANK):
                for program in settings.programs:
                    name = r.synth.sfpreset_name(r.sfid, bank, program)
                    if name is None:
                        continue
                    prefix = f"{slug(path.stem)}_b{bank:03d}_p{program:03d}_{slug(name)}"
                    for note in settings.notes:
                        mono = r.note(0, bank, program, note_to_midi(note), settings.velocity)
                        file = f"{prefix}_{note.replace('#', 's')}.wav"
                        if not (mono.size and float(np.max(np.abs(mono))) >= threshold):
                            silent.append(file)
                            continue
                        write_wav(out / file, mono, lib.sample_rate, subtype=lib.subtype)
                        kept.append(
                            Variation(
                                file,
                                program,
                                bank,
                                str(name),
                                gm_family(program),
                                category_from_gm_program(program),
                                note,
                                settings.velocity,
                            )
                        )
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows([getattr(v, c) for c in COLUMNS] for v in kept)
    write_text_atomic(out / "metadata.csv", text.getvalue())
    info = {
        "format": VARIATIONS_FORMAT,
        "settings": settings.to_dict(),
        "soundfonts": [soundfont_identity(Path(p), with_hash=False) for p in settings.soundfonts],
        "kept": len(kept),
        "presets": len({(v.bank, v.program, v.program_name) for v in kept}),
        "silent": silent,
    }
    write_text_atomic(out / VARIATIONS_JSON, json.dumps(info, indent=2) + "\n")
    return kept


def read_variations(folder: str | os.PathLike[str]) -> list[Variation]:
    """The notes of a finished variations folder (metadata.csv), in file order."""
    with open(Path(folder) / "metadata.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Variation(
            r["file"],
            int(r["program"]),
            int(r["bank"]),
            r["program_name"],
            r["family"],
            r["category"],
            r["note"],
            int(r["velocity"]),
        )
        for r in rows
    ]


def _complete(folder: Path, settings: VariationSettings) -> bool:
    try:
        info = json.loads((folder / VARIATIONS_JSON).read_text(encoding="utf-8"))
        notes = read_variations(folder)
    except (OSError, ValueError, KeyError):
        return False
    if info.get("format") != VARIATIONS_FORMAT or info.get("settings") != settings.to_dict():
        return False
    current = [soundfont_identity(Path(p), with_hash=False) for p in settings.soundfonts]
    if info.get("soundfonts") != current or len(notes) != info.get("kept"):
        return False
    return all((folder / v.file).is_file() for v in notes)


def ensure_variations(
    settings: VariationSettings, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The variations folder for `settings`, rendered on first use into the library cache
    (`<cache>/variations-<settings hash>`), under a lock so concurrent callers render once."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return render_cached(
        root / f"variations-{settings.digest()}",
        lambda folder: _complete(folder, settings),
        lambda tmp: render_variations(tmp, settings),
    )
