"""How much of the chained VAE's validation and test figures is the draw of a seed (issue 9).

Usage:
  .venv/bin/python benchmarks/seed_spread.py ensembles --run RUN --models DIR [--no-append]
  .venv/bin/python benchmarks/seed_spread.py spawn --run RUN --at E --children K [--out DIR]
  .venv/bin/python benchmarks/seed_spread.py end-to-end --run RUN [--seed S] [--out DIR]

RUN is a finished `samplegen run` folder. Every figure is RMS% through the run's frozen outer
decoder, with the VAE's codes taken from its encoder's mean ("mean") or refined end to end by 100
Adam steps ("refined", as the pipeline's combined model encodes).

- `ensembles`: the VAE models under DIR (`*/model`, e.g. `benchmarks/retrain_trial.py`'s output:
  one configuration, several seeds) one by one, the rank correlation of their validation and test
  figures (does choosing the seed on validation choose a better test figure?), and the average of
  K models' decoded outputs. Such an average spends K x 8 numbers on a note, so it is a measure of
  the spread, not a model that meets an 8-latent target.
- `spawn`: the study's chosen trial trained to epoch E with its own seed, then K children trained
  on from there with other shuffling seeds, and their weights averaged into one model. Children
  that stay in one basin average into a model as good as an ensemble of them.
- `end-to-end`: the chosen trial's configuration trained from its initialisation through the
  frozen outer decoder (the loss of fine-tuning, on the notes and the study's EQ copies) instead
  of on the outer encodings. It starts at random even where the configuration sets `anchor_epochs`
  (that start is defined on the encodings).

Appends a dated section to RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results_file import publish
from run_folder import chosen_trial

SPLITS = ("validation", "test")
REFINE_STEPS = 100


class Run:
    """A finished run's outer model, encodings and dataset, and the VAE study's choice."""

    def __init__(self, folder: Path, *, train_notes: bool = False) -> None:
        from samplegen.models.artifact import load_model
        from samplegen.platform.datasets import load_dataset
        from samplegen.platform.encoded import load_encoded

        self.folder = folder
        self.best = chosen_trial(folder)
        # The train split (2,925 encoded rows on the quick run) only where it is trained on.
        self.encoded = load_encoded(folder / "vae_study-encoded", splits=SPLITS)
        notes = ("train", *SPLITS) if train_notes else SPLITS
        self.dataset = load_dataset(folder / "dataset", splits=notes)
        self.outer = load_model(self.encoded.info["outer_model"])
        self.outer.model.eval()
        self.values = int(np.prod(self.dataset.splits["test"].x.shape[1:]))

    def rms(self, y: torch.Tensor, split: str) -> float:
        """RMS% of decoded notes `y` against `split`'s notes."""
        from samplegen.dsp.metrics import rms_percent

        x = torch.as_tensor(self.dataset.splits[split].x)
        return rms_percent(float(((y - x) ** 2).flatten(1).sum(1).mean()), self.values)

    def decoded(self, inner: Any, split: str, refine: bool) -> torch.Tensor:
        """`split`'s notes through `inner` and the outer decoder, codes refined or not."""
        from samplegen.models.combined import CombinedModel

        inner = copy.deepcopy(inner)
        inner.hparams = dataclasses.replace(
            inner.hparams, refine_steps=REFINE_STEPS if refine else 0
        )
        combined = CombinedModel.from_parts(self.outer.model, inner).eval()
        x = torch.as_tensor(self.dataset.splits[split].x)
        flat = torch.as_tensor(self.encoded.splits[split].z)
        out = []
        for start in range(0, len(x), 64):
            code = combined.encode_flat(flat[start : start + 64], x[start : start + 64])
            with torch.no_grad():
                out.append(combined.decode(code.detach()))
        return torch.cat(out)

    def scores(self, inner: Any) -> dict[str, float]:
        """{'validation mean': RMS%, 'validation refined': RMS%, ...} for `inner`."""
        return {
            f"{split} {kind}": self.rms(self.decoded(inner, split, kind == "refined"), split)
            for split in SPLITS
            for kind in ("mean", "refined")
        }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def ensembles(run: Run, models: Path) -> list[str]:
    from scipy.stats import spearmanr

    from samplegen.models.artifact import load_model

    folders = sorted(models.glob("*/model"))
    if len(folders) < 2:
        raise SystemExit(f"--models {models}: needs at least 2 model folders (*/model)")
    outputs: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
    rows = []
    for folder in folders:
        inner = load_model(folder).model
        row = [folder.parent.name]
        for split in SPLITS:
            row.append(f"{run.rms(run.decoded(inner, split, False), split):.3f}")
            outputs[split].append(run.decoded(inner, split, True))
            row.append(f"{run.rms(outputs[split][-1], split):.3f}")
        rows.append(row)
        print(" ".join(row), flush=True)
    refined = {s: [run.rms(y, s) for y in outputs[s]] for s in SPLITS}
    rho = spearmanr(refined["validation"], refined["test"]).statistic
    lines = _table(
        ["model", "validation, mean", "validation, refined", "test, mean", "test, refined"], rows
    )
    lines += [
        "",
        f"Refined, one model at a time: validation {np.mean(refined['validation']):.3f} on "
        f"average ({min(refined['validation']):.3f}-{max(refined['validation']):.3f}), test "
        f"{np.mean(refined['test']):.3f} ({min(refined['test']):.3f}-"
        f"{max(refined['test']):.3f}); Spearman rank correlation of validation and test over "
        f"the {len(folders)} models: {rho:.2f}. The model of lowest validation has test "
        f"{refined['test'][int(np.argmin(refined['validation']))]:.3f}.",
        "",
    ]
    ens_rows = []
    for k in sorted({k for k in (2, 3, 4) if k <= len(folders)} | {len(folders)}):
        groups = [range(i, i + k) for i in range(0, len(folders) - k + 1, k)]
        cells = [f"{k} (consecutive groups: {len(groups)})"]
        for split in SPLITS:
            values = [
                run.rms(torch.stack([outputs[split][i] for i in g]).mean(0), split) for g in groups
            ]
            cells.append(", ".join(f"{v:.3f}" for v in values))
        ens_rows.append(cells)
    lines += _table(["models averaged (refined outputs)", "validation", "test"], ens_rows)
    return lines


def spawn(run: Run, at: int, children: int, out: Path) -> list[str]:
    from samplegen.models.registry import build_model
    from samplegen.platform.chain import chain_study_data
    from samplegen.platform.trainable import trial_seed
    from samplegen.platform.training import Trainer, split_config

    epochs = int(run.best["epochs"])
    if not 0 <= at < epochs or children < 2:
        raise SystemExit(f"--at must be in 0..{epochs - 1} and --children >= 2")
    data = chain_study_data(run.folder / "vae_study-encoded", run.folder / "dataset")
    optim, hp = split_config(run.best["config"])
    seed = trial_seed(int(run.best.get("seed", 0)), run.best["config"])
    torch.manual_seed(seed)
    model = build_model(run.best["model"], hp, data.input_shape, device="cpu")
    trainer = Trainer(
        model, optim, data.train, data.validation, seed=seed, total_epochs=epochs, device="cpu"
    )
    trainer.anchor()  # the trial's deliberate start, if its configuration asks for one
    for epoch in range(1, at + 1):
        trainer.run_epoch(epoch)
    tensors, meta = trainer.state_tensors()
    trunk = ({k: v.detach().clone() for k, v in tensors.items()}, copy.deepcopy(meta))
    weights, rows = [], []
    for child in range(children):
        trainer.load_state_tensors({k: v.clone() for k, v in trunk[0].items()}, trunk[1])
        trainer.seed = seed if child == 0 else seed + 1000 + child
        for epoch in range(at + 1, epochs + 1):
            trainer.run_epoch(epoch)
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        s = run.scores(model)
        rows.append(
            [f"child {child} (shuffling seed {trainer.seed})", *(f"{v:.3f}" for v in s.values())]
        )
        print(" ".join(rows[-1]), flush=True)
    model.load_state_dict({k: torch.stack([w[k] for w in weights]).mean(0) for k in weights[0]})
    s = run.scores(model)
    rows.append([f"weights of the {children} averaged", *(f"{v:.3f}" for v in s.values())])
    _save(run, model, out / "average")
    return _table(["model", *s.keys()], rows)


def end_to_end(run: Run, seed: int, out: Path) -> list[str]:
    from samplegen.models.base import InnerModel
    from samplegen.models.combined import CombinedModel, TrainsOnEncodings
    from samplegen.models.registry import build_model
    from samplegen.platform.encoded import EqAugment
    from samplegen.platform.finetune import _with_eq_copies
    from samplegen.platform.trainable import trial_seed
    from samplegen.platform.training import Trainer, split_config

    epochs = int(run.best["epochs"])
    optim, hp = split_config(run.best["config"])
    trial = trial_seed(seed, run.best["config"])
    torch.manual_seed(trial)
    shape = (int(run.encoded.info["latent_dim"]),)
    inner = build_model(run.best["model"], hp, shape, device="cpu")
    assert isinstance(inner, InnerModel)  # the VAE study's models are all inner models
    combined = CombinedModel.from_parts(run.outer.model, inner)
    for p in combined.outer.parameters():
        p.requires_grad_(False)
    eq = EqAugment(**run.encoded.info["eq"])
    parts = _with_eq_copies(
        run.folder / "dataset", run.dataset.splits["train"].x, eq, run.outer.codec, print
    )
    wrap = TrainsOnEncodings(combined)
    trainer = Trainer(
        wrap,
        optim,
        wrap.rows(parts),
        wrap.rows([run.dataset.splits["validation"].x]),
        seed=trial,
        total_epochs=epochs,
        device="cpu",
    )
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss, _ = trainer.train_epoch(epoch)
        print(f"epoch {epoch}: train loss {loss:.2f}", flush=True)
    seconds = time.perf_counter() - t0
    combined.outer.eval()
    s = run.scores(inner)
    _save(run, inner, out / "model")
    rows = [
        [f"trained end to end, seed {seed}, {seconds:.0f} s", *(f"{v:.3f}" for v in s.values())]
    ]
    return _table(["model", *s.keys()], rows)


def _save(run: Run, inner: Any, folder: Path) -> None:
    """The VAE (inner model over the run's outer encodings) as a model folder, for a later look."""
    from samplegen.models.artifact import save_model

    save_model(folder, inner, codec=run.outer.codec, metrics={}, extra={"from": __file__})
    print(f"saved {folder}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("ensembles", "spawn", "end-to-end"):
        s = sub.add_parser(name)
        s.add_argument("--run", required=True, type=Path, help="a finished `samplegen run` folder")
        s.add_argument("--no-append", action="store_true")
        if name == "ensembles":
            s.add_argument("--models", required=True, type=Path, help="folder of */model VAEs")
        else:
            s.add_argument("--out", type=Path, default=None, help="where the models go")
        if name == "spawn":
            s.add_argument("--at", type=int, required=True, help="epoch the children fork at")
            s.add_argument("--children", type=int, default=4)
        if name == "end-to-end":
            s.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run = Run(args.run, train_notes=args.what == "end-to-end")
    out = args.out if getattr(args, "out", None) else args.run / f"seed_spread-{args.what}"
    if args.what == "ensembles":
        body = ensembles(run, args.models)
    elif args.what == "spawn":
        body = spawn(run, args.at, args.children, out)
    else:
        body = end_to_end(run, args.seed, out)
    command = "`.venv/bin/python benchmarks/seed_spread.py " + " ".join(sys.argv[1:]) + "`"
    best = run.best
    lines = [
        f"## How much is the draw of a seed: {args.what} (benchmarks/seed_spread.py), "
        f"{dt.date.today()}",
        "",
        f"- Command: {command}",
        f"- Machine: {platform.machine()} CPU, no GPU, torch {torch.__version__}",
        f"- The VAE study's chosen trial `{best.get('trial_id')}` of {args.run}: "
        f"{json.dumps(best['config'])}, {best['epochs']} epochs. RMS% through the frozen outer "
        f"decoder; mean: codes from the encoder's mean; refined: {REFINE_STEPS} Adam steps end "
        "to end.",
        "",
        *body,
        "",
    ]
    publish("\n".join(lines), append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
