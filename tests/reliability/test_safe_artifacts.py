"""Safe artifacts: nothing in the package unpickles; a write killed half-way leaves the previous
model or dataset loadable; the W&B key never leaves the environment. (cluster.yaml's ports are
checked by tests/platform/test_cluster_yaml.py.)"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

from reliability_helpers import (
    NO_EARLY_STOP,
    REPO,
    SAMPLEGEN,
    TINY_SPACE,
    kill_when,
    make_dataset,
    private_env,
    ray_temp_root,
    run_cli,
)

from samplegen.dsp.config import CodecConfig
from samplegen.models.artifact import load_model, save_model
from samplegen.models.registry import build_model
from samplegen.platform.datasets import load_dataset

PACKAGE = REPO / "samplegen"
UNPICKLERS = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve"}


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """Calls in `source` that can run code from a file: any unpickler's load/loads (and
    shelve.open, pandas read_pickle), torch.load without weights_only=True, np.load with
    allow_pickle=True. Follows `import x as y` and `from x import load` aliases."""
    tree = ast.parse(source, filename)
    modules: dict[str, str] = {}  # local name -> module
    functions: dict[str, str] = {}  # local name -> "module.function"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                modules[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                functions[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            name = f"{modules.get(f.value.id, f.value.id)}.{f.attr}"
        elif isinstance(f, ast.Name) and f.id in functions:
            name = functions[f.id]
        else:
            continue
        module, _, attr = name.rpartition(".")
        root = module.split(".")[0]
        kwargs = {k.arg: k.value for k in node.keywords}

        def constant(key: str, kwargs: dict[str | None, ast.expr] = kwargs) -> object:
            if key not in kwargs:
                return None
            v = kwargs[key]
            return v.value if isinstance(v, ast.Constant) else "not a constant"

        bad = (
            (root in UNPICKLERS and attr in ("load", "loads", "open", "Unpickler"))
            or (root == "pandas" and attr == "read_pickle")
            or (root == "torch" and attr == "load" and constant("weights_only") is not True)
            or (
                root == "numpy" and attr == "load" and constant("allow_pickle") not in (None, False)
            )
        )
        if bad:
            found.append(f"{filename}:{node.lineno}: {name}")
    return found


def test_the_scanner_catches_every_unsafe_load() -> None:
    planted = """
import pickle, torch
import numpy as np
import pickle as pk
from pickle import loads as undo
from cloudpickle import load
pickle.load(open("a", "rb"))
pk.loads(b"")
undo(b"")
load(f)
torch.load("w.pt")
torch.load("w.pt", weights_only=False)
np.load("a.npy", allow_pickle=True)
"""
    assert len(unsafe_loads(planted)) == 7, unsafe_loads(planted)
    fine = """
import torch, json
import numpy as np
torch.load("w.pt", weights_only=True)
np.load("a.npy")
np.load("a.npy", allow_pickle=False)
json.loads("{}")
"""
    assert unsafe_loads(fine) == []


def test_no_unpickling_anywhere_in_the_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    found = [hit for f in files for hit in unsafe_loads(f.read_text(), str(f.relative_to(REPO)))]
    assert not found, found


# A process that saves the same model folder over and over, each time with a new generation
# number, with enough weights that a save takes a while.
SAVER = """
import sys, torch
from samplegen.dsp.config import CodecConfig
from samplegen.models.artifact import save_model
from samplegen.models.registry import build_model
codec = CodecConfig(sample_rate=8000, duration=0.25, n_fft=256, hop=128, fade_s=0.01)
model = build_model("mlp_ae", {}, codec.shape)
i = 0
while True:
    i += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(i))
    save_model(sys.argv[1], model, codec=codec, extra={"generation": i})
"""


def test_a_model_save_killed_half_way_leaves_the_previous_model(tmp_path: Path) -> None:
    (tmp_path / "saver.py").write_text(SAVER)
    target = tmp_path / "models" / "m"
    last = 0
    for _ in range(3):

        def mid_write() -> bool:
            # A save is under way: its temporary folder exists beside the target.
            return target.is_dir() and any(
                p.name.startswith(".m.build-") for p in target.parent.iterdir()
            )

        kill_when(
            [sys.executable, str(tmp_path / "saver.py"), str(target)],
            {**os.environ},
            tmp_path,
            mid_write,
            tmp_path / "saver.log",
            timeout=120,
        )
        loaded = load_model(target)  # whole, and consistent with its own config
        generation = loaded.meta.extra["generation"]
        assert generation >= 1
        first = next(loaded.model.parameters())
        assert float(first.flatten()[0]) == float(generation)
        last = generation
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "m"]
    assert all(name.startswith(".m.") for name in leftovers), leftovers  # hidden, never loaded
    assert last >= 1
    # The next save clears what the killed ones left: they would otherwise pile up for good.
    codec = CodecConfig(sample_rate=8000, duration=0.25, n_fft=256, hop=128, fade_s=0.01)
    save_model(target, build_model("mlp_ae", {}, codec.shape), codec=codec)
    assert sorted(p.name for p in target.parent.iterdir()) == ["m"]


def test_a_dataset_build_killed_half_way_leaves_the_previous_dataset(
    tmp_path: Path, ray_session: None
) -> None:
    ds = make_dataset(tmp_path)
    from dataset_helpers import age_files  # on the path once make_dataset has run

    age_files(tmp_path / "src")
    before = json.loads((ds / "dataset.json").read_text())
    argv = ["data", "prepare", str(tmp_path / "src"), "--out", str(ds), "--force"]
    argv += ["--duration", "0.25", "--sample-rate", "8000", "--num-cpus", "1"]

    def building() -> bool:
        return any(p.name.startswith(".ds.build-") for p in tmp_path.iterdir())

    with ray_temp_root() as ray_tmp:
        kill_when(
            [SAMPLEGEN, *argv],
            private_env(ray_tmp),
            tmp_path,
            building,
            tmp_path / "prepare.log",
        )
    data = load_dataset(ds)
    assert json.loads((ds / "dataset.json").read_text()) == before
    assert sum(len(s) for s in data.splits.values()) == before["counts"]["rows"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.")]
    assert any(".build-" in n for n in leftovers), leftovers
    # Besides the half-built folder, only the work kept for the next build (the scan was done).
    assert all(".build-" in n or n == ".ds.progress" for n in leftovers), leftovers
    # The next build of the dataset clears the killed one's half-built folder and kept work.
    with ray_temp_root() as ray_tmp:
        result = run_cli(argv, private_env(ray_tmp), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scanning 0 of 24 audio files" in result.stdout, result.stdout
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.")]


def test_a_dataset_build_killed_while_encoding_goes_on_where_it_stopped(
    tmp_path: Path, ray_session: None
) -> None:
    sys.path.insert(0, str(REPO / "tests" / "platform"))
    from dataset_helpers import age_files, assert_same_dataset, instrument_folder

    from samplegen.platform.datasets import prepare_dataset

    instrument_folder(tmp_path / "src", 20)
    age_files(tmp_path / "src")
    ds = tmp_path / "ds"
    argv = ["data", "prepare", str(tmp_path / "src"), "--out", str(ds), "--batch-size", "1"]
    argv += ["--duration", "1.0", "--num-cpus", "1"]
    progress = tmp_path / ".ds.progress"

    def encoding() -> bool:
        return progress.is_dir() and any(p.name.startswith("encoded-") for p in progress.iterdir())

    with ray_temp_root() as ray_tmp:
        kill_when(
            [SAMPLEGEN, *argv],
            private_env(ray_tmp),
            tmp_path,
            encoding,
            tmp_path / "prepare.log",
            poll=0.01,
        )
    assert not ds.exists()
    kept = len([p for p in progress.iterdir() if p.name.startswith("encoded-")])
    with ray_temp_root() as ray_tmp:
        result = run_cli(argv, private_env(ray_tmp), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scanning 0 of 60 audio files" in result.stdout, result.stdout
    encoding_line = next(line for line in result.stdout.splitlines() if "encoding" in line)
    done = int(encoding_line.split("; ")[1].split()[0])  # "...; N encoded before)"
    assert kept <= done < 60 and encoding_line.startswith(f"encoding {60 - done} of 60 rows")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.")]
    # What the two runs made together is what one uninterrupted run makes.
    fresh = prepare_dataset(
        tmp_path / "src", tmp_path / "fresh", CodecConfig(duration=1.0), echo=None
    )
    assert_same_dataset(ds, fresh)


FAKE_KEY = "sgplanted9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def test_the_wandb_key_never_leaves_the_environment(tmp_path: Path, ray_session: None) -> None:
    ds = make_dataset(tmp_path)
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    argv = ["tune", "outer", "--data", str(ds), "--name", "wb", "--storage", "studies"]
    argv += ["--space", "space.yaml", "--trials", "2", "--epochs", "2", *NO_EARLY_STOP]
    argv += ["--wandb", "--examples", "--num-cpus", "2"]
    with ray_temp_root() as ray_tmp:
        env = private_env(ray_tmp, WANDB_API_KEY=FAKE_KEY, WANDB_MODE="offline")
        result = run_cli(argv, env, tmp_path)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        # Everything the study wrote, W&B's offline runs and their configs, and every Ray log.
        written = [p for p in (tmp_path / "studies").rglob("*") if p.is_file()]
        ray_logs = [p for p in ray_tmp.rglob("*") if p.is_file() and not p.is_socket()]
    runs = list((tmp_path / "studies" / "wb" / "wandb").glob("**/offline-run-*"))
    assert len(runs) == 2
    # Each run's record (run-*.wandb holds its config and history) is among the files searched.
    assert all(list(run.glob("run-*.wandb")) for run in runs), runs
    assert len(ray_logs) > 10
    key = FAKE_KEY.encode()
    assert key not in (result.stdout + result.stderr).encode()
    leaks = [str(p) for p in written + ray_logs if key in _read(p)]
    assert not leaks, leaks


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_a_save_killed_between_its_two_renames_loses_nothing(tmp_path: Path) -> None:
    from samplegen.dsp.config import CodecConfig
    from samplegen.models.artifact import save_model
    from samplegen.models.registry import build_model

    codec = CodecConfig(sample_rate=8000, duration=0.25, n_fft=256, hop=128, fade_s=0.01)
    model = build_model("mlp_ae", {}, codec.shape)
    target = tmp_path / "models" / "m"
    save_model(target, model, codec=codec, extra={"generation": 1})
    # The state a kill leaves after `target -> .m.old-*` and before `.m.tmp-* -> target`.
    target.rename(target.parent / ".m.old-deadbeef")
    (target.parent / ".m.tmp-cafecafe").mkdir()  # the unfinished new save
    loaded = load_model(target)
    assert loaded.meta.extra["generation"] == 1 and target.is_dir()
    # A save after such a crash also starts from the recovered model and replaces it.
    target.rename(target.parent / ".m.old-deadbeef")
    save_model(target, model, codec=codec, extra={"generation": 2})
    assert load_model(target).meta.extra["generation"] == 2
    assert not list(target.parent.glob(".m.old-*"))
