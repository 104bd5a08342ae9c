"""What the command line refuses before any work starts, and how: one line naming the option or the
file, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from samplegen.cli import arg_types
from samplegen.cli.main import main


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["tune", "outer", "--data", "D", "--name", "n"],
        ["data", "prepare", "builtin", "--out", "D"],
        ["generate", "random", "--model", "M", "--out", "O"],
        ["evaluate", "--model", "M", "--data", "D"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--seed", "-1", "argument --seed: must be from 0 to 2147483647, got -1"),
        ("--seed", "2147483648", "argument --seed: must be from 0 to 2147483647, got 2147483648"),
        ("--seed", "1.5", "argument --seed: must be a whole number, got '1.5'"),
    ],
)
def test_a_seed_out_of_range_is_refused_by_the_parser(
    command: list[str],
    flag: str,
    value: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A negative seed used to pass the parser and fail in numpy, after `run` had built its dataset.
    with pytest.raises(SystemExit) as exit_:
        main([*command, flag, value])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")


@pytest.mark.parametrize("command", [["run"], ["tune", "outer", "--data", "D", "--name", "n"]])
def test_num_cpus_below_one_is_refused_by_the_parser(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for value in ("0", "-3"):
        with pytest.raises(SystemExit):
            main([*command, "--num-cpus", value])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.endswith(f"error: argument --num-cpus: must be >= 1, got {value}")


def test_the_seed_range_leaves_room_for_the_offsets_added_to_it() -> None:
    # A searcher's draws add up to 7919 per suggestion; numpy's legacy seeds stop at 2**32 - 1.
    assert arg_types.MAX_SEED + 7919 * 100_000 < 2**32
    assert arg_types.seed("0") == 0 and arg_types.positive_int("4") == 4


def test_a_folder_that_cannot_be_made_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A file where a folder should be: the system's reason, with the path, and no traceback.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "lib"
    assert main(["library", "--out", str(out), "--programs", "0", "--notes", "C4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samplegen: error: ")
    assert err == [f"samplegen: error: {out}: Not a directory"]


def test_run_refuses_an_address_where_no_ray_cluster_listens(tmp_path: Path) -> None:
    import socket

    # A port nothing listens on: taken from the system, then let go.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    # In a process of its own: the test session's Ray is already connected, and would be reused.
    done = subprocess.run(
        [sys.executable, "-m", "samplegen.cli.main", "run"]
        + ["--address", f"127.0.0.1:{port}", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"samplegen: error: --address 127.0.0.1:{port}: no Ray cluster answers there "
        "(Connection refused); start one (`ray start --head`, `ray up cluster.yaml`) or leave "
        "the address out to start Ray on this machine"
    ]
    assert not out.exists()
