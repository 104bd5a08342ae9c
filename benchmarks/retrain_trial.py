"""The VAE study's chosen trial trained again at other learning rates and seeds.

Usage: .venv/bin/python benchmarks/retrain_trial.py --run RUN [--lr study,-4.25] [--seeds 0,1]
       [--epochs 20] [--anchor-epochs A] [--set KEY=VALUE ...] [--out DIR] [--no-append]

For each learning rate (`study`: the chosen trial's own `lr_exp`) and seed it trains the chosen
configuration of RUN/vae_study on RUN/vae_study-encoded as the study did (`longrun.train_config`,
`epochs` cosine epochs, the epoch of lowest validation loss kept), then scores it as the study
selects: the end-to-end validation loss through the frozen outer decoder (codes from the encoder's
mean, no refinement). A finished model under OUT is reused. It asks how much of the study's choice
is its learning rate and how much the draw of a seed. `--anchor-epochs A` trains every model from
the VAE's deliberate start of A epochs instead (the hyper-parameter `anchor_epochs`), to ask whether
that start takes the draw away. `--set KEY=VALUE` (repeatable; VALUE read as JSON where it parses,
else as text) changes one more hyper-parameter of the trial, to compare a setting the study did not
search with the same trial. `benchmarks/seed_spread.py ensembles --models OUT` scores the models
as evaluation does. Appends a dated section to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
from pathlib import Path

from results_file import publish
from run_folder import chosen_trial


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `samplegen run` folder")
    p.add_argument("--lr", default="study,-4.25", help="lr_exp values, `study` for the trial's own")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument(
        "--anchor-epochs",
        type=int,
        default=None,
        help="the VAE's anchor_epochs (default: the trial's)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another hyper-parameter of the trial (repeatable)",
    )
    p.add_argument("--out", default=None, help="folder for the models (default RUN/retrain_trial)")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    changes: dict[str, object] = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key:
            p.error(f"--set {item!r}: expected KEY=VALUE")
        if key == "lr_exp":
            p.error("--set lr_exp: the learning rate is set by --lr")
        if key in changes:
            p.error(f"--set {key}: given twice")
        try:
            changes[key] = json.loads(text)
        except json.JSONDecodeError:
            changes[key] = text
    if args.anchor_epochs is not None:
        if "anchor_epochs" in changes:
            p.error("--set anchor_epochs: given twice (with --anchor-epochs)")
        changes["anchor_epochs"] = args.anchor_epochs

    from samplegen.dsp.metrics import rms_percent
    from samplegen.models.artifact import load_model
    from samplegen.platform.chain import chain_study_data
    from samplegen.platform.longrun import train_config
    from samplegen.platform.trainable import EndToEnd

    run = Path(args.run)
    best = chosen_trial(run)
    own = float(best["config"]["lr_exp"])
    lrs = [own if v == "study" else float(v) for v in args.lr.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out_root = Path(args.out) if args.out else run / "retrain_trial"
    data = chain_study_data(run / "vae_study-encoded", run / "dataset")
    scorer = EndToEnd(data.extra["outer_model"], data.extra["validation_target"], "cpu")
    values = math.prod(data.extra["validation_target"].shape[1:])

    rows = []
    for lr in lrs:
        cells = []
        for seed in seeds:
            folder = out_root / f"lr{lr:+.2f}_s{seed}"
            if not (folder / "model" / "config.json").is_file():
                folder.mkdir(parents=True, exist_ok=True)
                config = {**best, "config": {**best["config"], **changes, "lr_exp": lr}}
                (folder / "best_config.json").write_text(json.dumps(config, indent=1))
                train_config(
                    folder / "best_config.json",
                    run / "vae_study-encoded",
                    folder / "model",
                    epochs=args.epochs,
                    stall_window=0,
                    overfit_limit=0,
                    study_data=data,
                    seed=seed,
                    echo=None,
                )
            model = load_model(folder / "model")
            loss = scorer.loss(model.model, data.validation, 64)
            cells.append((loss, int(model.meta.metrics["best_epoch"])))
            print(
                f"lr_exp {lr:+.2f} seed {seed}: validation {loss:.2f} ({rms_percent(loss, values):.3f}%)"
            )
        rows.append((lr, cells))

    import torch

    lines = [
        f"## The VAE study's chosen trial at other learning rates and seeds "
        f"(benchmarks/retrain_trial.py), {dt.date.today()}",
        "",
        f"- Command: `.venv/bin/python benchmarks/retrain_trial.py --run {args.run} --lr {args.lr} "
        f"--seeds {args.seeds} --epochs {args.epochs}"
        + (f" --anchor-epochs {args.anchor_epochs}" if args.anchor_epochs is not None else "")
        + "".join(f" --set {item}" for item in args.set)
        + (f" --out {args.out}`" if args.out else "`"),
        f"- Machine: {platform.machine()} CPU, no GPU, torch {torch.__version__}",
        f"- The trial: `{best.get('trial_id')}` {json.dumps(best['config'])} (its own lr_exp "
        f"{own:+.2f})"
        + (f", changed: {json.dumps(changes)}" if changes else "")
        + f", {args.epochs} epochs; figures: the end-to-end validation loss the study "
        "selects on (encoder mean, no refinement), RMS% in brackets, and the epoch kept.",
        "",
        "| lr_exp | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---:|" + "---:|" * len(seeds),
    ]
    for lr, cells in rows:
        mark = " (the study's)" if lr == own else ""
        lines.append(
            f"| {lr:+.2f}{mark} | "
            + " | ".join(
                f"{loss:.2f} ({rms_percent(loss, values):.3f}%), epoch {e}" for loss, e in cells
            )
            + " |"
        )
    publish("\n".join([*lines, ""]), append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
