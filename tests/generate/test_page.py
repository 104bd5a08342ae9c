"""The audition page: built from a run folder, opened in headless Chromium from file://."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from samplegen.cli.main import main
from samplegen.generate.browser import check_page, find_chromium
from samplegen.generate.plots import _figure, _save

if TYPE_CHECKING:
    from tests.generate.conftest import TrainedModels

GL = ["--griffin-lim-iters", "4"]


def _progress_png(path: Path) -> None:
    fig = _figure(4, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([5, 3, 2.5, 2.2], "o-")
    _save(fig, path)


@pytest.fixture(scope="module")
def run_dir(trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with everything but the VAE study (which the page must call missing)."""
    run = tmp_path_factory.mktemp("run")
    (run / "dataset").mkdir()
    (run / "dataset" / "report.md").write_text(
        "# Dataset report\n\n| split | samples |\n|---|---|\n| train | 10 |\n| test | 2 |\n\n"
        "- 2 categories\n- <script>alert(1)</script> is escaped\n"
    )
    (run / "dataset" / "report.json").write_text(json.dumps({"samples": 12}))
    study = run / "outer_study"
    study.mkdir()
    (study / "results.csv").write_text("trial_id,loss,config/layers\na,3.5,4\nb,2.25,5\n")
    (study / "best_config.json").write_text(json.dumps({"layers": 5, "kernels": 4}))
    _progress_png(study / "progress.png")
    shutil.copytree(trained_models.combined, run / "models" / "combined" / "best")
    (run / "evaluation").mkdir()
    (run / "evaluation" / "metrics.json").write_text(
        json.dumps({"combined": {"loss": 51.2, "rms_percent": 2.5}})
    )
    (run / "evaluation" / "summary.md").write_text("## Summary\n\nloss **51.2**\n")
    (run / "evaluation" / "outer").mkdir()
    (run / "evaluation" / "outer" / "metrics.json").write_text(
        json.dumps({"outer": {"loss": 30.5}})
    )
    m, w = trained_models.combined, trained_models.wavs
    s = run / "sounds"
    commands: list[list[str | Path]] = [
        ["reconstruct", m, *w[:3], "--variations", "1"],
        ["interpolate", m, w[0], w[5], "--steps", "3"],
        ["grid", m, *w[:4], "--size", "3"],
        ["random", m, "--count", "3"],
        ["perturb", m, w[1], "--levels", "0,0.5"],
        ["sweep", m, "--values", "-1,1"],
    ]
    for cmd in commands:
        assert main(["generate", *map(str, cmd), "--out", str(s / cmd[0]), *GL]) == 0
    assert main(["report", str(run)]) == 0
    return run


def test_the_console_names_the_missing_parts(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # On a folder laid out otherwise (the README's data/, studies/, models/), the page is gaps.
    other = tmp_path / "not_a_run"
    (other / "models").mkdir(parents=True)
    assert main(["report", str(other)]) == 0
    err = capsys.readouterr().err
    assert "part(s) of a run folder missing" in err and "dataset" in err and "vae_study" in err
    assert main(["report", str(run_dir), "--out", str(tmp_path / "page.html")]) == 0
    err = capsys.readouterr().err
    assert "part(s) of a run folder missing (listed on the page): vae_study" in err


def test_a_folder_that_is_no_run_and_a_path_holding_another_file_are_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # These used to write a page of gaps into any folder, and to replace whatever file --out named.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "not a run folder (none of dataset/, outer_study/" in capsys.readouterr().err
    assert not (empty / "index.html").exists()
    notes = tmp_path / "notes.html"
    notes.write_text("my notes")
    assert main(["report", str(run_dir), "--out", str(notes)]) == 2
    assert "a file that is not an audition page is there; refusing" in capsys.readouterr().err
    assert notes.read_text() == "my notes"
    assert main(["report", str(run_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"samplegen: error: --out {tmp_path}: is a folder; give the page's file path "
        f"({tmp_path / 'index.html'})"
    ]
    # A page it wrote is replaced (the run_dir fixture wrote index.html once already).
    assert main(["report", str(run_dir)]) == 0


def test_page_lists_every_part_and_what_is_missing(run_dir: Path) -> None:
    html = (run_dir / "index.html").read_text()
    for text in (
        "Dataset report",
        "Study: outer_study",
        "progress.png",
        "Best models",
        "best",
        "Summary",
        "evaluation/outer/metrics.json",
        "30.5",
        "Sounds: grid",
        "Sounds: sweep",
        "analysis_latents.png",
    ):
        assert text in html, text
    assert "missing: vae_study" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html  # nothing from the network
    # Every WAV the generation wrote is on the page.
    wavs = {p.relative_to(run_dir).as_posix() for p in (run_dir / "sounds").rglob("*.wav")}
    for wav in wavs:
        assert f'src="{wav}"' in html.replace("%2B", "+"), wav


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (/usr/bin/chromium)")
def test_page_opens_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    check = check_page(run_dir / "index.html", shot)
    assert check.problems() == []
    wavs = list((run_dir / "sounds").rglob("*.wav"))
    assert len(check.audio) == len(wavs) > 30
    assert all(a["seconds"] == pytest.approx(0.5, abs=0.01) for a in check.audio)
    assert len(check.images) > 30
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("SAMPLEGEN_SCREENSHOT")
    if keep:  # for a person to look at: SAMPLEGEN_SCREENSHOT=/tmp/page.png pytest ...
        shutil.copyfile(shot, keep)


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (/usr/bin/chromium)")
def test_broken_audio_is_reported(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(run_dir, run)
    (run / "sounds" / "random" / "random001.wav").unlink()
    (run / "sounds" / "random" / "random002.wav").write_bytes(b"RIFF not really a wav")
    check = check_page(run / "index.html")
    bad = sorted(a["src"] for a in check.audio if not a["ok"])
    assert bad == ["sounds/random/random001.wav", "sounds/random/random002.wav"]
    assert not check.ok
