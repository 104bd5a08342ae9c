"""Search efficiency: epochs and wall time grid, gp, tpe and asha+cutoff need to get within 5% of
the grid's best validation loss, and Ray's per-trial overhead as a share of trial time.

    .venv/bin/python benchmarks/search.py [--out /tmp/sg-bench-search] [--append]

Data: the built-in FluidR3 library (C3/C4/C5), encoded at a reduced codec (16 kHz, 1 s, STFT
512/256 -> 257 x 63) so four studies fit in about 10 minutes on 2 CPU cores; 64 diverse training
samples. Space: conv2d_ae layers {2, 3} x kernels {4, 8} x lr_exp {-5, -4} (batch 2^4), 8 epochs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import yaml

SPACE = {
    "model": "conv2d_ae",
    "params": {
        "layers": {"type": "int", "low": 2, "high": 3, "grid": [2, 3]},
        "kernels": {"type": "int", "low": 4, "high": 8, "grid": [4, 8]},
        "kernel_size": {"type": "const", "value": 4},
        "batch_exp": {"type": "const", "value": 4},
        "lr_exp": {"type": "float", "low": -5.0, "high": -4.0, "grid": [-5.0, -4.0]},
    },
}
EPOCHS = 8
TRIALS = 8


def _curve(study_dir: Path) -> list[tuple[float, int, float]]:
    """(wall seconds since the study's first trial started, epochs so far, val_loss) per result."""
    rows = []
    for f in study_dir.glob("trial_*/result.json"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if math.isfinite(r.get("val_loss", math.inf)):
                rows.append((r["timestamp"], r["val_loss"], r["time_total_s"]))
    start = min(t - tt for t, _, tt in rows)
    rows.sort()
    return [(t - start, i + 1, v) for i, (t, v, _) in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "sg-bench-search"))
    parser.add_argument("--append", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from samplegen.dsp.config import CodecConfig
    from samplegen.platform.datasets import prepare_dataset
    from samplegen.platform.study import StudyConfig, ensure_ray, load_study_data, run_study

    out = Path(args.out)
    shutil.rmtree(out / "studies", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    ensure_ray(
        num_cpus=2,
        object_store_memory=400 * 1024 * 1024,
        temp_dir=tempfile.mkdtemp(prefix="sgbs-", dir="/tmp"),
    )
    codec = CodecConfig(sample_rate=16000, duration=1.0, n_fft=512, hop=256)
    ds = prepare_dataset("builtin", out / "ds", codec, echo=None)
    data = load_study_data(ds, train_subset=64)
    (out / "space.yaml").write_text(yaml.safe_dump(SPACE))
    results = {}
    for label, search, scheduler in (
        ("grid", "grid", "fifo"),
        ("gp", "gp", "fifo"),
        ("tpe", "tpe", "fifo"),
        ("asha+cutoff", "random", "asha+cutoff"),
    ):
        config = StudyConfig(
            name=label.replace("+", "-"),
            model="conv2d_ae",
            search=search,
            scheduler=scheduler,
            trials=TRIALS,
            epochs=EPOCHS,
            storage=str(out / "studies"),
            space=str(out / "space.yaml"),
            stall_window=None,
            overfit_limit=None,
            cutoff_grace=3,
            asha_grace=2,
            progress=False,
            seed=1,
        )
        t0 = time.perf_counter()
        r = run_study(config, data)
        wall = time.perf_counter() - t0
        curve = _curve(Path(r.path))
        per_trial = []
        for row in r.rows:
            lines = (Path(row["path"]) / "result.json").read_text().splitlines()
            rs = [json.loads(x) for x in lines]
            trained = sum(x.get("epoch_seconds", 0.0) for x in rs if "epoch_seconds" in x)
            per_trial.append((trained, rs[-1]["time_total_s"]))
        train_s = sum(a for a, _ in per_trial)
        trial_s = sum(b for _, b in per_trial)
        results[label] = {
            "curve": curve,
            "wall": wall,
            "train_s": train_s,
            "trial_s": trial_s,
            "epochs": sum(row["epochs"] for row in r.rows),
            "trials": len(r.rows),
            "best": r.best["best_val_loss"] if r.best else math.nan,
        }
    target = 1.05 * results["grid"]["best"]
    lines = [
        f"\n## Search efficiency (benchmarks/search.py), {dt.date.today().isoformat()}\n",
        "Command: `.venv/bin/python benchmarks/search.py --append`. Machine: 2-core CPU, no GPU "
        f"({platform.machine()}, shared with other work). Data: built-in FluidR3 C3/C4/C5 at "
        "16 kHz / 1 s / STFT 512/256 (257 x 63), 64 diverse training samples. Space: conv2d_ae "
        "layers {2,3} x kernels {4,8} x lr_exp {-5,-4}, batch 16, 8 epochs, 8 trials, 2 parallel.\n",
        f"Target: within 5% of the grid's best validation loss ({results['grid']['best']:.3f}): "
        f"{target:.3f}.\n",
        "| search | trials | total epochs | best val loss | epochs to target | wall s to target | "
        "study wall s | Ray overhead (1 - train / trial time) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, res in results.items():
        hit = next(((t, e) for t, e, v in res["curve"] if v <= target), None)
        to_epochs = str(hit[1]) if hit else "not reached"
        to_wall = f"{hit[0]:.1f}" if hit else "-"
        overhead = 1 - res["train_s"] / res["trial_s"] if res["trial_s"] else math.nan
        lines.append(
            f"| {label} | {res['trials']} | {res['epochs']} | {res['best']:.3f} | {to_epochs} | "
            f"{to_wall} | {res['wall']:.1f} | {overhead:.1%} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
