"""Variation presets rendered from the real FluidR3 SoundFonts (samplegen.dsp.variations)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from samplegen.dsp.library import LibraryError
from samplegen.dsp.variations import (
    ensure_variations,
    read_variations,
    render_variations,
    variation_settings,
)


def test_renders_each_variation_of_the_programs_asked_for_and_nothing_else(
    tmp_path: Path,
) -> None:
    settings = variation_settings([0, 4, 125], ["C4"])
    notes = render_variations(tmp_path / "a", settings)
    found = {(v.bank, v.program, v.program_name) for v in notes}
    # Piano (0) has no variation; EP 1 (4) one in FluidR3_GM's bank 8; Helicopter (125) one in
    # FluidR3_GM's bank 9 and eight in FluidR3_GS's banks 1-8.
    assert (8, 4, "Detuned EP 1") in found and (9, 125, "Burst Noise") in found
    assert (1, 125, "Car-Engine") in found and (8, 125, "StarShip") in found
    assert {p for _, p, _ in found} == {4, 125} and len(found) == 10
    assert all(v.note == "C4" and v.velocity == 100 for v in notes)
    assert {v.category for v in notes if v.program == 4} == {"E-Piano"}  # its program's
    for v in notes:
        audio, rate = sf.read(tmp_path / "a" / v.file)
        assert rate == 44100 and audio.ndim == 1 and abs(audio).max() > 1e-3, v.file
    assert read_variations(tmp_path / "a") == notes
    # Deterministic: a second render is byte-identical.
    render_variations(tmp_path / "b", settings)
    for v in notes:
        assert (tmp_path / "a" / v.file).read_bytes() == (tmp_path / "b" / v.file).read_bytes()


def test_ensure_variations_reuses_and_repairs_the_cache(tmp_path: Path) -> None:
    settings = variation_settings([4], ["C3", "C4"])
    folder = ensure_variations(settings, cache_dir=tmp_path)
    files = sorted(p.name for p in folder.glob("*.wav"))
    assert len(files) == 2
    stamp = (folder / files[0]).stat().st_mtime_ns
    assert ensure_variations(settings, cache_dir=tmp_path) == folder
    assert (folder / files[0]).stat().st_mtime_ns == stamp  # reused, not rendered again
    (folder / files[1]).unlink()
    assert ensure_variations(settings, cache_dir=tmp_path) == folder
    assert sorted(p.name for p in folder.glob("*.wav")) == files  # repaired
    other = ensure_variations(variation_settings([4], ["C4"]), cache_dir=tmp_path)
    assert other != folder and len(list(other.glob("*.wav"))) == 1


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="programs"):
        variation_settings([4, 200])
    with pytest.raises(LibraryError, match="velocity"):
        variation_settings([4], velocity=0)
    with pytest.raises(LibraryError, match="no such file"):
        variation_settings([4], soundfonts=[str(tmp_path / "missing.sf2")])
