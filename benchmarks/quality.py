"""Sound quality against issue 9's targets: outer and chained models, with the same-size PCA reference.

Usage: .venv/bin/python benchmarks/quality.py [--preset quick] [--run runs/quality] [--no-append]

Runs (or reuses, stage by stage) `samplegen run --preset P --out RUN`, then evaluates the outer and
the combined model on the library's train and test splits and on every note of Debian's TimGM6mb
SoundFont (samples independent of FluidR3, never trained on), and appends a table to
benchmarks/RESULTS.md: each target, the value reached, the same-size PCA reference on the same
encodings, the command, the configuration, machine and date. Selection inside the run used the
validation split only; test figures are reported, never selected on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

from results_file import publish

TARGETS = {
    "outer_test": 0.7,
    "vae_train": 1.0,
    "vae_test": 1.5,
    "ratio": 2.0,
}


def _rms(mean_loss: float, values: int) -> float:
    return 100.0 * math.sqrt(mean_loss / values)


def _evaluate_all_splits(model: str, dataset: Path, out: Path, gl: int) -> dict[str, Any]:
    """Mean loss and RMS% over every row of every split (for a dataset never trained on)."""
    from samplegen.platform.evaluation import evaluate_model

    total, count, vps, last = 0.0, 0, 0, {}
    for split in ("train", "validation", "test"):
        m = evaluate_model(model, dataset, split=split, out=out / split, griffin_lim_iters=gl)
        n = m["loss"]["count"]
        total += m["loss"]["mean"] * n
        count += n
        vps = m["loss"]["values_per_sample"]
        last = m
    mean = total / max(count, 1)
    return {"count": count, "mean": mean, "rms_percent": _rms(mean, vps), "last": last}


def _amortized_rms(model_dir: str, dataset: Path, split: str) -> float:
    """RMS% of the combined model when codes come from the encoder alone (no refinement), on the
    split's real notes: augmented rows (mixes, variation presets) are left out, as
    `samplegen evaluate` leaves them out of the refined figure it is printed beside."""
    import numpy as np
    import torch

    from samplegen.models.artifact import load_model
    from samplegen.platform.datasets import load_dataset
    from samplegen.platform.evaluation.run import _real_rows

    model = load_model(model_dir).model
    x, _, _ = _real_rows(load_dataset(dataset, splits=(split,)), split)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x), 64):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + 64]))
            total += float((model.decode(model.encode_amortized(xb)) - xb).pow(2).sum())
    return _rms(total / len(x), int(np.prod(x.shape[1:])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--run", default="runs/quality")
    p.add_argument(
        "--griffin-lim-iters",
        type=int,
        default=0,
        help="for the train-split and TimGM6mb evaluations (0: their audio figures use random "
        "phase and mean nothing; the RMS%% figures do not depend on it)",
    )
    p.add_argument("--seed", type=int, default=0, help="the run's seed (`samplegen run --seed`)")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)

    from samplegen.dsp.config import CodecConfig
    from samplegen.platform.datasets import prepare_dataset
    from samplegen.platform.evaluation import evaluate_model
    from samplegen.platform.evaluation.summary import interval_text
    from samplegen.platform.pipeline import run_pipeline
    from samplegen.platform.presets import get_preset

    preset = get_preset(args.preset)
    t0 = time.monotonic()
    done = run_pipeline(preset, args.run, seed=args.seed)
    pipeline_s = time.monotonic() - t0
    run = Path(done["run_dir"])
    dataset = Path(done["dataset"])
    gl = args.griffin_lim_iters
    ev = run / "quality"
    rows: dict[str, dict[str, Any]] = {
        # The pipeline already evaluated both models on the test split (with Griffin-Lim).
        "outer_test": json.loads((run / "evaluation" / "outer" / "metrics.json").read_text()),
        "combined_test": json.loads((run / "evaluation" / "metrics.json").read_text()),
    }
    for name, model in (("outer", done["outer_model"]), ("combined", done["combined_model"])):
        rows[f"{name}_train"] = evaluate_model(
            model, dataset, split="train", out=ev / name / "train", griffin_lim_iters=gl
        )
    timgm = prepare_dataset(
        "builtin:timgm6mb", run / "timgm6mb-dataset", CodecConfig(), notes=preset.notes, echo=None
    )
    rows["outer_timgm"] = _evaluate_all_splits(done["outer_model"], timgm, ev / "outer_timgm", gl)
    rows["combined_timgm"] = _evaluate_all_splits(
        done["combined_model"], timgm, ev / "combined_timgm", gl
    )

    refine = {
        split: _amortized_rms(done["combined_model"], dataset, split) for split in ("train", "test")
    }
    ct, cs = rows["combined_train"], rows["combined_test"]
    pca = cs["pca_reference"]["pca"]["end_to_end"]
    latent = cs["latent"]
    ratio = cs["loss"]["mean"] / ct["loss"]["mean"]
    combined_cfg = json.loads((Path(done["combined_model"]) / "config.json").read_text())
    model_cfg = combined_cfg["hparams"]
    tuned = combined_cfg.get("extra", {}).get("finetune")
    values = math.prod(combined_cfg["input_shape"])
    finetune_line = (
        f"- End-to-end fine-tuning (`finetune` stage, outer frozen): "
        f"{json.dumps(tuned['settings'])}; validation RMS% "
        f"{_rms(tuned['val_recon_before'], values):.3f} -> {_rms(tuned['val_recon_after'], values):.3f}"
        f" (codes refined as the model encodes); kept the {tuned['kept']} weights"
        if tuned
        else "- End-to-end fine-tuning: none"
    )
    interval = interval_text(cs["loss"].get("rms_percent_interval"))
    interval_line = (
        f"{cs['loss']['rms_percent']:.3f}, bootstrap interval over the test split's instruments "
        f"{interval}: where another draw of such instruments could put the figure"
        if interval
        else f"{cs['loss']['rms_percent']:.3f} (no interval: the evaluation predates it)"
    )
    lines = [
        f"## Sound quality (benchmarks/quality.py), {dt.date.today().isoformat()}",
        "",
        "- Command: `.venv/bin/python benchmarks/quality.py --preset "
        f"{args.preset} --run {args.run}{f' --seed {args.seed}' if args.seed else ''}`",
        f"- Machine: {platform.machine()} {platform.processor() or ''} 2-core CPU, no GPU, "
        f"Python {platform.python_version()}; pipeline wall time {pipeline_s:.0f} s "
        "(0 when every stage was reused from an earlier run)",
        f"- Data: built-in FluidR3 library ({preset.notes}), splits by GM program "
        f"(train {ct['loss']['count']}, test {cs['loss']['count']}); generalisation: every "
        f"TimGM6mb note ({rows['combined_timgm']['count']}), a SoundFont that shares no samples",
        f"- Models: outer {model_cfg['outer']} {json.dumps(model_cfg['outer_hparams'])}; "
        f"inner {model_cfg['inner']} {json.dumps(model_cfg['inner_hparams'])}",
        finetune_line,
        "- RMS% as the original: 100 sqrt(mean per-sample SSE / values per sample), in the mu-law "
        "STFT magnitude domain; test-split figures from the run's own evaluation stage",
        "",
        "| target | value | goal | met | same-size PCA reference |",
        "|---|---:|---:|---|---:|",
        f"| outer auto-encoder, test RMS% | {rows['outer_test']['loss']['rms_percent']:.3f} | "
        f"<= {TARGETS['outer_test']} | "
        f"{'yes' if rows['outer_test']['loss']['rms_percent'] <= TARGETS['outer_test'] else 'no'} | - |",
        f"| chained VAE ({latent['dims']} latents), train RMS% | {ct['loss']['rms_percent']:.3f} | "
        f"<= {TARGETS['vae_train']} | "
        f"{'yes' if ct['loss']['rms_percent'] <= TARGETS['vae_train'] else 'no'} | "
        f"{pca['train']['rms_percent']:.3f} |",
        f"| chained VAE, test RMS% | {cs['loss']['rms_percent']:.3f} | <= {TARGETS['vae_test']} | "
        f"{'yes' if cs['loss']['rms_percent'] <= TARGETS['vae_test'] else 'no'} | "
        f"{pca['eval']['rms_percent']:.3f} |",
        f"| active latent dimensions | {latent['active_units']} of {latent['dims']} | all | "
        f"{'yes' if latent['active_units'] == latent['dims'] else 'no'} | - |",
        f"| test / train loss | {ratio:.2f} | <= {TARGETS['ratio']} | "
        f"{'yes' if ratio <= TARGETS['ratio'] else 'no'} | - |",
        f"| outer auto-encoder, TimGM6mb RMS% | {rows['outer_timgm']['rms_percent']:.3f} | report | - | - |",
        f"| chained VAE, TimGM6mb RMS% | {rows['combined_timgm']['rms_percent']:.3f} | report | - | - |",
        "",
        f"Chained VAE, test RMS% {interval_line}. "
        f"Outer alone on train: {rows['outer_train']['loss']['rms_percent']:.3f}% RMS. "
        f"The chained VAE without code refinement (the encoder's mean; inner refine_steps "
        f"{model_cfg['inner_hparams'].get('refine_steps', 0)} above): train "
        f"{refine['train']:.3f}%, test {refine['test']:.3f}%. "
        "Per-split metrics.json and summary.md files are under RUN/quality/.",
        "",
    ]
    text = "\n".join(lines)
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
