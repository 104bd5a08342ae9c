"""The pure parts of dataset preparation: names, splits, pitch, mixes, diverse subset (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_helpers import midi_hz, tone

from samplegen.errors import SamplegenError
from samplegen.platform.augment import mix_waves, parse_mix_range, plan_mixes
from samplegen.platform.names import (
    group_from_name,
    midi_to_note,
    note_from_name,
    note_to_midi,
    parse_notes,
    regrouped,
    velocity_from_name,
)
from samplegen.platform.pitch import check_pitch
from samplegen.platform.splits import SplitFractions, split_for_group
from samplegen.platform.subset import diverse_subset


@pytest.mark.parametrize(
    ("name", "midi"),
    [
        ("Grand Piano_C4", 60),
        ("piano-c3-v100", 48),
        ("PianoC5", 72),
        ("Strings C#4 vel127", 61),
        ("Strings_Db4", 61),
        ("Bb3 horn", 58),
        ("TR808 kick", None),
        ("Flute", None),
        ("Cello_C-1", 0),
    ],
)
def test_note_from_name(name: str, midi: int | None) -> None:
    assert note_from_name(name) == midi


def test_note_names_round_trip_and_parse() -> None:
    assert [midi_to_note(note_to_midi(n)) for n in ("C3", "C#4", "B5")] == ["C3", "C#4", "B5"]
    assert parse_notes("C3, C4,C5") == (48, 60, 72)
    assert parse_notes("all") is None
    with pytest.raises(ValueError, match="H4"):
        parse_notes("C3,H4")


def test_velocity_and_group_from_name() -> None:
    assert velocity_from_name("Piano_C4_v100") == 100
    assert velocity_from_name("Piano_C4_vel_64") == 64
    assert velocity_from_name("Piano_C4") is None
    groups = {
        group_from_name(n)
        for n in ("Grand Piano_C4_v100", "grand-piano-C3", "Grand Piano C#5 vel127")
    }
    assert groups == {"grand_piano"}
    assert group_from_name("Grand Piano_C4") != group_from_name("Upright Piano_C4")


@pytest.mark.parametrize(
    "names",
    [
        ("Violin.arco.ff.sulA.C4", "Violin.arco.pp.sulA.C5", "Violin.arco.mf.sulA.C3"),
        ("Piano_C4_rr1", "Piano_C4_rr2", "Piano_C5_rr3"),
        ("Piano_C4_close", "Piano_C4_room", "Piano_C4_ambient"),
        ("Piano_060", "Piano_072"),
    ],
)
def test_one_instruments_dynamics_round_robins_and_mics_are_one_group(
    names: tuple[str, ...],
) -> None:
    # Each would otherwise be an instrument of its own, and could land in another split.
    assert len({group_from_name(n) for n in names}) == 1
    assert all(regrouped(n) for n in names)


def test_numbered_instruments_stay_apart_and_old_groups_keep_their_fingerprints() -> None:
    assert group_from_name("Electric Piano 1_C4") == "electric_piano_1"
    assert group_from_name("Electric Piano 2_C4") == "electric_piano_2"
    assert group_from_name("Flute 10_C4_v100") == "flute_10"
    # Grouped as before: a dataset of such names keeps its fingerprint (no re-preparation).
    assert not any(regrouped(n) for n in ("Grand Piano_C4_v100", "drums_standard_kit_C3_v100"))


def test_split_is_deterministic_and_roughly_proportional() -> None:
    fractions = SplitFractions()
    groups = [f"instrument_{i}" for i in range(3000)]
    splits = [split_for_group(g, fractions) for g in groups]
    assert splits == [split_for_group(g, fractions) for g in groups]
    share = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["validation"] == pytest.approx(0.1, abs=0.02)
    # A different fraction only moves groups across one boundary: train stays a superset.
    bigger = SplitFractions(0.9, 0.05, 0.05)
    assert all(
        split_for_group(g, bigger) == "train"
        for g, s in zip(groups, splits, strict=True)
        if s == "train"
    )


@pytest.mark.parametrize("spec", ["0.8,0.1", "0.5,0.5,0.5", "a,b,c", "-0.1,0.6,0.5"])
def test_bad_split_fractions(spec: str) -> None:
    with pytest.raises(SamplegenError, match="splits"):
        SplitFractions.parse(spec)


def test_pitch_check_accepts_the_named_note_and_rejects_another() -> None:
    sr = 8000
    for midi in (48, 60, 72):
        wave = tone(midi, seconds=0.25, sr=sr, seed=midi)
        assert check_pitch(wave, sr, [midi_hz(midi)], 0.1).ok
    wrong = tone(69, seconds=0.25, sr=sr)
    result = check_pitch(wrong, sr, [midi_hz(60)], 0.1)
    assert not result.ok
    assert result.loudest_hz == pytest.approx(440.0, rel=0.03)


def test_pitch_check_finds_a_fundamental_weaker_than_its_harmonic() -> None:
    sr = 16000
    t = np.arange(sr // 2) / sr
    f0 = midi_hz(48)
    wave = 0.4 * np.sin(2 * np.pi * f0 * t) + 1.0 * np.sin(2 * np.pi * 2 * f0 * t)
    result = check_pitch(wave, sr, [f0], 0.05)
    assert result.ok
    assert result.loudest_hz == pytest.approx(2 * f0, rel=0.02)
    assert result.fundamental_hz == pytest.approx(f0, rel=0.02)


def test_pitch_check_hears_a_fundamental_the_two_peaks_miss() -> None:
    # A dulcimer-like note: the second harmonic loudest, the fundamental well below an eighth of
    # it, the third partial between: the loudest and first strong peaks both say the octave
    # above, the subharmonic summation the note's own pitch.
    sr = 16000
    t = np.arange(sr // 2) / sr
    f0 = midi_hz(60)
    partials = ((1, 0.1), (2, 1.0), (3, 0.5), (4, 0.3))
    wave = np.sum([a * np.sin(2 * np.pi * k * f0 * t) for k, a in partials], axis=0)
    result = check_pitch(wave, sr, [f0], 0.1)
    assert result.loudest_hz == pytest.approx(2 * f0, rel=0.02)
    assert result.fundamental_hz == pytest.approx(2 * f0, rel=0.02)
    assert result.ok and result.f0_hz == pytest.approx(f0, rel=0.02)
    # A note an octave off is still refused.
    assert not check_pitch(wave, sr, [f0 / 2], 0.1).ok


def test_diverse_subset_on_a_constructed_case() -> None:
    # Nine points near the origin (the mean) and two far apart on opposite sides.
    x = np.zeros((11, 2), dtype=np.float32)
    x[:9] = np.random.default_rng(0).normal(0, 0.01, (9, 2))
    x[9] = [10.0, 0.0]
    x[10] = [-10.0, 0.5]
    nearest_mean = int(np.argmin(np.linalg.norm(x - x.mean(axis=0), axis=1)))
    chosen = diverse_subset(x, 3)
    assert chosen[0] == nearest_mean
    assert set(chosen[1:].tolist()) == {9, 10}
    assert len(set(diverse_subset(x, 11).tolist())) == 11
    assert diverse_subset(x, 50).size == 11
    assert diverse_subset(x.reshape(11, 1, 2), 3).tolist() == chosen.tolist()


def test_plan_mixes_is_seeded_and_pairs_different_instruments() -> None:
    groups = ["a", "a", "b", "b", "c"]
    notes = [48, 60, 48, 60, 48]
    plans = plan_mixes(groups, notes, 20, (0.3, 0.7), seed=1)
    assert plans == plan_mixes(groups, notes, 20, (0.3, 0.7), seed=1)
    assert plans != plan_mixes(groups, notes, 20, (0.3, 0.7), seed=2)
    for p in plans:
        assert groups[p.first] != groups[p.second]
        assert notes[p.first] == notes[p.second]
        assert 0.3 <= p.amount <= 0.7
    with pytest.raises(SamplegenError):
        plan_mixes(["a"], [48], 1, (0.3, 0.7), seed=0)
    with pytest.raises(SamplegenError, match="mix range"):
        parse_mix_range("0.7,0.3")


def test_mix_waves_renormalises() -> None:
    a = np.array([1.0, 0.0, -0.5], dtype=np.float32)
    b = np.array([0.0, 1.0, -1.0], dtype=np.float32)
    mixed = mix_waves(a, b, 0.5)
    assert np.max(np.abs(mixed)) == pytest.approx(1.0)
    np.testing.assert_allclose(mixed, [0.5 / 0.75, 0.5 / 0.75, -1.0], rtol=1e-6)


@pytest.mark.parametrize("spec", ["nan,0.5,0.5", "0.8,nan,0.2", "inf,0,0"])
def test_split_fractions_that_are_not_numbers_are_refused(spec: str) -> None:
    # NaN passes every comparison: such fractions sent every group to test.
    with pytest.raises(SamplegenError, match="splits: fractions must"):
        SplitFractions.parse(spec)
