"""`samplegen data prepare` over a corpus of 40+ broken and unusual audio files: nothing crashes,
every bad file is reported with its reason, every good file is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audio_corpus import build_corpus

from samplegen.cli.main import main
from samplegen.platform.datasets import load_dataset


def test_every_broken_file_is_reported_and_every_good_file_kept(
    tmp_path: Path, ray_session: None, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = build_corpus(tmp_path / "corpus")
    assert len(expected) >= 30
    args = ["data", "prepare", str(tmp_path / "corpus"), "--out", str(tmp_path / "ds")]
    # The CLI's own entry point, on the session's Ray (a short wave codec keeps it quick).
    assert main([*args, "--repr", "wave", "--duration", "0.25", "--sample-rate", "8000"]) == 0
    assert "wrote dataset" in capsys.readouterr().out

    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    seen = {f["path"]: f for f in report["files"]}
    assert set(seen) == set(expected)  # every audio file is in the report, the .txt is not
    assert report["counts"]["other_files_ignored"] == 1
    got = {p: (f["status"], f["reason"]) for p, f in seen.items()}
    wrong = {
        p: (got[p], e)
        for p, e in expected.items()
        if got[p][0] != e.status or (e.status == "rejected" and got[p][1] not in e.reasons)
    }
    assert not wrong, wrong
    for f in report["files"]:
        if f["status"] != "kept":
            assert f["detail"], f  # says why, in words
    report_md = (tmp_path / "ds" / "report.md").read_text()
    assert all(p in report_md for p, e in expected.items() if e.status == "rejected")

    # Exactly the good files made it into the dataset.
    data = load_dataset(tmp_path / "ds")
    rows = [m["path"] for s in data.splits.values() for m in s.meta]
    assert sorted(rows) == sorted(p for p, e in expected.items() if e.status == "kept")
    for split in data.splits.values():
        assert split.x.shape[1:] == (2000,) and (abs(split.x) <= 1.0).all()
