"""Would the pipeline's own refit reach instruments it never trained on further? Held-out halves.

Not a target benchmark. The refit (samplegen.platform.refit) trains on the validation split, so
validation cannot judge it. Here validation's instruments are split into halves as
`explore_inner.py --val-folds 2` splits them (whole instruments, seeded); for each half K a dataset
is written whose validation split is half K and whose test split is the other half, and the run's
refit is made from it exactly as the pipeline's `refit` stage makes it (`refit_chain`: the VAE
study's chosen trial retraced on train + half K, the same EQ copies, code refinement and
fine-tuning). The refit model and the run's own model (trained on train only) are then scored on
the other half: RMS% of the real notes, codes refined as the models encode. The test split is
never read. The run folder is only read.

Usage: .venv/bin/python benchmarks/refit_folds.py RUN --out OUT [--folds 0,1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from samplegen.models.artifact import load_model
from samplegen.platform.datasets import load_dataset, require_dataset_info
from samplegen.platform.evaluation.inference import run_model
from samplegen.platform.refit import refit_chain
from samplegen.platform.study import ensure_ray

sys.path.insert(0, str(Path(__file__).parent))
from refit_run import run_settings  # noqa: E402


def fold_of_groups(groups: list[str], folds: int = 2) -> dict[str, int]:
    """The halves of explore_inner.py --val-folds: a seeded order of the sorted groups, dealt."""
    names = sorted(set(groups))
    order = np.random.default_rng(0).permutation(len(names))
    return {names[g]: i % folds for i, g in enumerate(order)}


def fold_dataset(run: Path, fold: int, out: Path) -> Path:
    """RUN/dataset with validation = half `fold` and test = the other half (train unchanged)."""
    src = run / "dataset"
    info = require_dataset_info(src)
    val = pq.read_table(src / info["files"]["validation"])
    folds = fold_of_groups(val.column("group").to_pylist())
    mine = pa.array([folds[g] == fold for g in val.column("group").to_pylist()])
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pq.read_table(src / info["files"]["train"]), out / "data" / "train.parquet")
    pq.write_table(val.filter(mine), out / "data" / "validation.parquet")
    held = val.filter(pa.compute.invert(mine))
    split_col = held.schema.get_field_index("split")
    held = held.set_column(split_col, "split", pa.array(["test"] * len(held), pa.string()))
    pq.write_table(held, out / "data" / "test.parquet")
    doc = {
        **info,
        "fingerprint": f"{info['fingerprint'][:24]}fold{fold}",
        "files": {s: f"data/{s}.parquet" for s in ("train", "validation", "test")},
        "rows_per_split": {
            "train": info["rows_per_split"]["train"],
            "validation": int(sum(mine.to_pylist())),
            "test": len(held),
        },
    }
    (out / "dataset.json").write_text(json.dumps(doc, indent=2) + "\n")
    return out


def held_rms(model_dir: Path, dataset: Path) -> float:
    """RMS% of the real notes of `dataset`'s test split (the held-out half), as the model encodes."""
    split = load_dataset(dataset, splits=("test",)).splits["test"]
    keep = [i for i, m in enumerate(split.meta) if not m.get("augmented")]
    x = np.asarray(split.x, np.float32)[keep]
    out = run_model(load_model(model_dir).model, x, batch_size=16, device="cpu", keep_recon=False)
    return 100 * math.sqrt(float(np.mean(out.losses)) / math.prod(x.shape[1:]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", default="0,1")
    a = p.parse_args()
    preset, eq, tune = run_settings(a.run)
    selected = a.run / "models" / "combined"
    ensure_ray()
    for fold in (int(f) for f in a.folds.split(",")):
        work = a.out / f"fold{fold}"
        data = fold_dataset(a.run, fold, work / "dataset")
        refit = refit_chain(
            a.run / "vae_study",
            a.run / "models" / "outer",
            data,
            work / "models" / "combined",
            work=work,
            refine_steps=preset["refine_steps"],
            eq=eq,
            finetune=tune,
        )
        before, after = held_rms(selected, data), held_rms(refit, data)
        print(
            f"half {1 - fold} held out, half {fold} trained on: run's model {before:.3f}%, "
            f"refit {after:.3f}% ({after - before:+.3f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
