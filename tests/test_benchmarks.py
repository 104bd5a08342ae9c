"""Every benchmark script starts and explains itself: `--help` exits 0 with a usage line.

The benchmarks run for minutes to hours, so CI does not run them; this catches a script broken by
a change in the package it imports at start-up, or a help text argparse cannot format.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# Modules the scripts import, not scripts themselves.
HELPERS = {"results_file.py", "run_folder.py"}
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name not in HELPERS)


def test_the_benchmarks_folder_holds_scripts() -> None:
    assert len(SCRIPTS) > 20


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_benchmark_script_answers_help(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout.lower()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["--set", "frame_activation"], "--set 'frame_activation': expected KEY=VALUE"),
        (["--set", "lr_exp=-4"], "--set lr_exp: the learning rate is set by --lr"),
        (["--set", "beta=0.1", "--set", "beta=0.2"], "--set beta: given twice"),
        (
            ["--set", "anchor_epochs=1", "--anchor-epochs", "2"],
            "given twice (with --anchor-epochs)",
        ),
    ],
)
def test_retrain_trial_refuses_a_bad_setting_before_it_loads_anything(
    tmp_path: Path, settings: list[str], message: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "retrain_trial.py"),
            *("--run", str(tmp_path / "no-run"), *settings),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 2
    assert message in done.stderr
