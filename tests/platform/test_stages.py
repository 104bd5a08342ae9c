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


def test_a_storage_uri_is_kept_without_its_credentials(tmp_path: Path) -> None:
    settings = {"preset": "quick", "storage": "s3://KEY:SECRET@bucket/studies"}

    def stage() -> dict[str, Any]:
        return {"study": "s3://KEY:SECRET@bucket/studies/outer"}

    StageRunner(tmp_path, settings, log=lambda _: None).run("a", stage)
    kept = (tmp_path / "run.json").read_text() + (tmp_path / ".stages" / "a.json").read_text()
    assert "s3://***@bucket/studies" in kept and "SECRET" not in kept and "KEY" not in kept
    # Another key to the same bucket continues the run: credentials are no setting of it.
    other = {"preset": "quick", "storage": "s3://OTHER:KEY2@bucket/studies"}
    assert StageRunner(tmp_path, other, log=lambda _: None).done("a")
    with pytest.raises(SamplegenError, match="storage"):
        StageRunner(tmp_path, {**other, "storage": "s3://k:s@elsewhere/studies"})


def test_a_run_folder_that_recorded_credentials_resumes_and_forgets_them(tmp_path: Path) -> None:
    # Run folders written before credentials were hidden hold them in run.json.
    (tmp_path / "run.json").write_text('{"preset": "quick", "storage": "s3://K:S@b/x"}')
    StageRunner(tmp_path, {"preset": "quick", "storage": "s3://K:S@b/x"}, log=lambda _: None)
    assert "S@" not in (tmp_path / "run.json").read_text()
