"""The checkers the project holds itself to: ruff (lint and format) and mypy (pyproject's config)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _ruff() -> str:
    # The venv's own ruff sits beside its python; PATH may hold another release.
    beside = Path(sys.executable).with_name("ruff")
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: run `bash scripts/setup.sh --dev`")
    return found


def test_ruff_finds_nothing() -> None:
    result = _run([_ruff(), "check", "--no-cache", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing() -> None:
    result = _run([_ruff(), "format", "--check", "--no-cache", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing(tmp_path: Path) -> None:
    # Files and settings come from pyproject.toml; the cache stays out of the checkout.
    result = _run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy")])
    assert result.returncode == 0, result.stdout + result.stderr
