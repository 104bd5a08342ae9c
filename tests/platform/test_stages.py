from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from samplegen.errors import SamplegenError
from samplegen.platform.stages import StageRunner


def test_finished_stages_are_not_run_again(tmp_path: Path) -> None:
    calls: list[str] = []

    def stage(name: str, fail: bool = False) -> Callable[[], dict[str, Any]]:
        def fn() -> dict[str, Any]:
            calls.append(name)
            if fail:
                raise RuntimeError("killed")
            return {"path": name}

        return fn

    runner = StageRunner(tmp_path, {"preset": "quick"}, log=lambda _: None)
    runner.run("a", stage("a"))
    with pytest.raises(RuntimeError):
        runner.run("b", stage("b", fail=True))
    assert not runner.done("b")

    again = StageRunner(tmp_path, {"preset": "quick"}, log=lambda _: None)
    assert again.run("a", stage("a")) == {"path": "a"}
    assert again.run("b", stage("b")) == {"path": "b"}
    assert calls == ["a", "b", "b"]


def test_other_settings_are_refused(tmp_path: Path) -> None:
    StageRunner(tmp_path, {"preset": "quick"}, log=lambda _: None)
    with pytest.raises(SamplegenError, match="preset"):
        StageRunner(tmp_path, {"preset": "full"}, log=lambda _: None)


def test_a_moved_run_folder_resumes_from_its_own_files(tmp_path: Path) -> None:
    first = tmp_path / "first"
    elsewhere = str(tmp_path / "elsewhere" / "data")

    def stage() -> dict[str, Any]:
        return {"model": str(first / "models" / "outer"), "data": elsewhere, "count": 3}

    runner = StageRunner(first, {"preset": "quick"}, log=lambda _: None)
    assert runner.run("a", stage)["model"] == str(first / "models" / "outer")
    moved = tmp_path / "moved"
    first.rename(moved)
    again = StageRunner(moved, {"preset": "quick"}, log=lambda _: None)
    # Inside the run folder: where the folder is now. Outside it: as recorded.
    assert again.run("a", stage) == {
        "model": str(moved / "models" / "outer"),
        "data": elsewhere,
        "count": 3,
    }
