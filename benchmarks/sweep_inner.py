"""A parallel sweep of inner VAE configurations over a run's outer encodings (GPU or CPU).

Research, not a target benchmark: it answers "which VAE settings generalise best?" faster than a
Ray Tune study when a single GPU is lent without Ray (the device machine cannot receive Ray's
79 MB wheel). Every configuration builds the package's own `vae` model from the registry; the loop
is the platform Trainer's (Adam, per-epoch cosine learning rate, per-sample SSE + beta * KL) with
two optional training-only extras under study:

- `mixup` (alpha): each batch is replaced by convex mixes of pairs of encodings (Zhang et al. 2018);
- `sa_steps` (k): semi-amortised training. Besides the usual ELBO, the decoder is also fitted to
  codes refined by k Adam steps from the encoder's mean (the same refinement as evaluation).

Selection follows the study: end-to-end validation RMS% (through the frozen outer decoder, the
encoder's mean, no refinement) every `eval_every` epochs, best epoch kept. The best epoch is then
reported on validation and test, with and without refinement (`refine_steps` 100).

Usage:
  python benchmarks/sweep_inner.py --encoded RUN/vae_study-encoded --dataset RUN/dataset \
      --outer RUN/models/outer --grid broad --workers 8 --out sweep.jsonl [--save-best DIR]
  python benchmarks/sweep_inner.py --table sweep.jsonl    (seeds averaged, best validation first)
The dataset folder only needs dataset.json and the validation and test Parquet files. With
--extra-encoded, configurations marked `extra` also train on that folder's train split (e.g. the
same programs rendered from another SoundFont); validation and test stay the run's own.
Configurations with `trainval` train on train + validation and keep their last epoch (their
validation columns are then not held out); `select: last` keeps the last epoch on train alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from samplegen.models.artifact import load_model
from samplegen.models.registry import build_model
from samplegen.models.vae import VAE
from samplegen.platform.datasets import load_dataset
from samplegen.platform.encoded import load_encoded

BASE: dict[str, Any] = {
    "latent": 8,
    "depth": 3,
    "ratio": 0.15,
    "beta": 0.1,
    "warmup": "linear",
    "warmup_epochs": 20,
    "free_bits": 0.0,
    "lr": 1e-3,
    "batch": 32,
    "weight_decay": 0.0,
    "epochs": 200,
    "mixup": 0.0,
    "sa_steps": 0,
    "noise": 0.0,
    "extra": False,
    "trainval": False,
    "select": "best",
}
MODEL_KEYS = ("latent", "depth", "ratio", "beta", "warmup", "warmup_epochs", "free_bits")


def grid(name: str) -> list[dict[str, Any]]:
    """Named lists of configurations (each a change from BASE)."""
    if name == "smoke":
        return [{"epochs": 10}, {"epochs": 10, "mixup": 0.4, "sa_steps": 3}]
    if name == "broad":
        out: list[dict[str, Any]] = [{"epochs": e} for e in (60, 200, 600)]
        for beta in (0.03, 0.1, 0.3):
            for ratio in (0.08, 0.15, 0.3):
                for depth in (2, 3):
                    if (beta, ratio, depth) != (0.1, 0.15, 3):
                        out.append({"beta": beta, "ratio": ratio, "depth": depth})
        out += [{"batch": b, "lr": 1e-3 * b / 32} for b in (16, 64, 128)]
        out += [{"lr": lr} for lr in (3e-4, 3e-3)]
        out += [{"weight_decay": wd} for wd in (1e-5, 1e-4)]
        out += [{"mixup": a} for a in (0.2, 1.0)]
        out += [{"sa_steps": k, "batch": 64, "lr": 2e-3} for k in (10, 30)]
        out += [{"noise": s} for s in (0.05, 0.2)]
        out += [{"free_bits": fb} for fb in (0.5, 1.0)]
        out += [{"warmup": "cyclical", "warmup_epochs": 40}]
        return out
    if name == "round2":
        # Seeds for the base and the broad sweep's best (mixup 1.0), combinations, the extra
        # training data (--extra-encoded), and the broad sweep's configurations that timed out.
        out = [{"seed": s} for s in (0, 1, 2)]
        out += [{"mixup": 1.0, "seed": s} for s in (0, 1, 2)]
        out += [{"extra": True, "seed": s} for s in (0, 1)]
        out += [{"extra": True, "mixup": 1.0, "seed": s} for s in (0, 1)]
        out += [
            {"mixup": 1.0, "weight_decay": 1e-4},
            {"mixup": 1.0, "beta": 0.03},
            {"mixup": 1.0, "ratio": 0.3},
            {"mixup": 1.0, "epochs": 400},
            {"mixup": 2.0},
            {"noise": 0.2},
            {"sa_steps": 10, "batch": 64, "lr": 2e-3},
            {"free_bits": 0.5},
            {"warmup": "cyclical", "warmup_epochs": 40},
        ]
        return out
    if name == "short":
        # The quick preset's VAE budget (60 and 100 epochs): does mixup still help there?
        return [
            {"epochs": e, "mixup": m, "seed": s, "ratio": r}
            for e in (60, 100)
            for m in (0.0, 1.0)
            for s in (0, 1, 2)
            for r in (0.15, 0.25)
        ]
    if name == "trainval":
        # Refit on train + validation (no early stopping: the last epoch) against the same
        # recipe on train alone, last epoch too; test is the only fair column here.
        return [
            {"mixup": 1.0, "select": "last", "trainval": tv, "seed": s}
            for tv in (False, True)
            for s in (0, 1, 2)
        ]
    if name == "studylr":
        # The quick study's winning optimiser (batch 16, lr 10^-4.687 x 16): mixup on and off.
        return [
            {"batch": 16, "lr": 16 * 10**-4.687, "epochs": 60, "mixup": m, "seed": s}
            for m in (0.0, 1.0)
            for s in (0, 1, 2)
        ]
    raise SystemExit(f"unknown grid {name!r}: smoke, broad, round2, short, trainval, studylr")


def _rms(sse_sum: float, count: int, values: int) -> float:
    return 100.0 * math.sqrt(sse_sum / count / values)


class Sweep:
    """Data and the frozen outer decoder on one device, shared by the configurations a worker runs."""

    def __init__(self, args: argparse.Namespace, device: str) -> None:
        self.device = device
        enc = load_encoded(args.encoded)
        self.latent_shape = tuple(enc.info["latent_shape"])
        self.z = {
            s: torch.as_tensor(enc.splits[s].z, device=device)
            for s in ("train", "validation", "test")
        }
        data = load_dataset(args.dataset, splits=("validation", "test"))
        self.x = {s: torch.as_tensor(data.splits[s].x, device=device) for s in data.splits}
        if args.extra_encoded:
            extra = load_encoded(args.extra_encoded, splits=("train",)).splits["train"].z
            self.z["extra"] = torch.cat([self.z["train"], torch.as_tensor(extra, device=device)])
        self.values = int(np.prod(data.codec.shape))
        self.outer = load_model(args.outer).model.to(device).eval()
        for p in self.outer.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def e2e(self, model: Any, split: str, refine: bool) -> float:
        """End-to-end RMS% of `split` through VAE then outer decoder."""
        z, x = self.z[split], self.x[split]
        total = 0.0
        for i in range(0, len(z), 128):
            zb = z[i : i + 128]
            code = model.encode(zb) if refine else model.encode_amortized(zb)
            rec = self.outer.decode(model.decode(code).reshape(-1, *self.latent_shape))
            total += float((rec - x[i : i + 128]).pow(2).sum())
        return _rms(total, len(z), self.values)

    def run(self, change: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Train one configuration; its report and its best weights."""
        cfg = {**BASE, "seed": seed, **change}
        seed = int(cfg["seed"])
        hp = {k: cfg[k] for k in MODEL_KEYS} | {"refine_steps": 0}
        torch.manual_seed(seed)
        train = self.z["extra"] if cfg["extra"] else self.z["train"]
        if cfg["trainval"]:
            train = torch.cat([train, self.z["validation"]])
        model = build_model("vae", hp, (train.shape[1],), device=self.device)
        assert isinstance(model, VAE)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        refiner = dataclasses.replace(model.hparams, refine_steps=max(cfg["sa_steps"], 1))
        scale = float(train.std())
        gen = torch.Generator(device=self.device).manual_seed(seed)
        best: tuple[float, int, dict[str, torch.Tensor] | None] = (math.inf, 0, None)
        t0 = time.perf_counter()
        epochs = int(cfg["epochs"])
        eval_every = max(1, epochs // 60)
        for epoch in range(1, epochs + 1):
            model.train()
            lr = cfg["lr"] * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
            for g in opt.param_groups:
                g["lr"] = lr
            order = torch.randperm(len(train), generator=gen, device=self.device)
            for start in range(0, len(order), cfg["batch"]):
                xb = train[order[start : start + cfg["batch"]]]
                if cfg["mixup"]:
                    lam = torch.distributions.Beta(cfg["mixup"], cfg["mixup"]).sample((len(xb), 1))
                    lam = lam.to(self.device)
                    xb = lam * xb + (1 - lam) * xb[torch.randperm(len(xb), device=self.device)]
                inp = xb + cfg["noise"] * scale * torch.randn_like(xb) if cfg["noise"] else xb
                out = model(inp)
                loss = model.loss(xb, out, epoch=epoch).total
                if cfg["sa_steps"]:
                    model.hparams, saved = refiner, model.hparams
                    zr = model.refine(out.mu.detach(), xb)
                    model.hparams = saved
                    loss = loss + (model.decode(zr) - xb).pow(2).flatten(1).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch % eval_every == 0 or epoch == epochs:
                model.eval()
                val = self.e2e(model, "validation", refine=False)
                if not math.isfinite(val):
                    break
                if val < best[0] or (cfg["select"] == "last" and epoch == epochs):
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best = (val, epoch, state)
        seconds = time.perf_counter() - t0
        kept = best[2]
        if kept is None:
            raise FloatingPointError("validation RMS% not finite at the first evaluation")
        model.load_state_dict(kept)
        model.eval()
        model.hparams = dataclasses.replace(model.hparams, refine_steps=100)
        with torch.no_grad():
            mu = model.encode_amortized(self.z["train"])
            rec = model.decode(mu)
            train_sse = float((rec - self.z["train"]).pow(2).sum(1).mean())
            active = int((mu.var(0, unbiased=False) > 0.01).sum())
        report = {
            "change": change,
            "config": cfg,
            "best_epoch": best[1],
            "val": round(best[0], 4),
            "test": round(self.e2e(model, "test", refine=False), 4),
            "val_refined": round(self.e2e(model, "validation", refine=True), 4),
            "test_refined": round(self.e2e(model, "test", refine=True), 4),
            "train_code_sse": round(train_sse, 3),
            "active": active,
            "params": model.num_params(),
            "seconds": round(seconds, 1),
        }
        return report, kept


def _worker(args: argparse.Namespace, device: str, jobs: Any, results: Any) -> None:
    torch.set_num_threads(max(1, args.threads))
    sweep = Sweep(args, device)
    while True:
        job = jobs.get()
        if job is None:
            return
        index, change = job
        try:
            report, state = sweep.run(change, args.seed)
            if args.save_best:
                path = Path(args.save_best) / f"config{index:03d}"
                path.mkdir(parents=True, exist_ok=True)
                save_split(state, path)
                (path / "config.json").write_text(json.dumps(report["config"]))
        except Exception as exc:  # noqa: BLE001 - one failed config must not end the sweep
            report = {"change": change, "error": f"{type(exc).__name__}: {exc}"}
        results.put((index, report))


def save_split(state: dict[str, torch.Tensor], path: Path, max_bytes: int = 15 << 20) -> None:
    """Save weights as safetensors files of at most `max_bytes`, splitting large tensors by rows
    (the device machine returns files of at most 16 MiB)."""
    pieces: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        t = t.detach().float().cpu().contiguous()
        rows = max(1, max_bytes // max(1, t[0].numel() * 4)) if t.dim() > 1 else t.shape[0]
        for part, start in enumerate(range(0, t.shape[0], rows)):
            pieces[f"{name}@{part}"] = t[start : start + rows].clone()
    files: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, t in pieces.items():
        n = t.numel() * 4
        if size + n > max_bytes and files[-1]:
            files.append({})
            size = 0
        files[-1][key] = t
        size += n
    for i, chunk in enumerate(files):
        save_file(chunk, str(path / f"weights{i}.safetensors"))


def table(path: str) -> str:
    """A markdown table of a sweep's results: one row per configuration, seeds averaged."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        if "error" in r:
            continue
        key = json.dumps({k: v for k, v in r["change"].items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, []).append(r)

    def mean(rows: list[dict[str, Any]], k: str) -> float:
        return sum(float(r[k]) for r in rows) / len(rows)

    order = sorted(groups, key=lambda k: mean(groups[k], "val"))
    lines = [
        "| change from the base | seeds | best epochs | validation | test | validation, "
        "refined | test, refined | active |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for key in order:
        rows = groups[key]
        epochs = ",".join(str(r["best_epoch"]) for r in rows)
        lines.append(
            f"| `{key}` | {len(rows)} | {epochs} | {mean(rows, 'val'):.3f} | "
            f"{mean(rows, 'test'):.3f} | {mean(rows, 'val_refined'):.3f} | "
            f"{mean(rows, 'test_refined'):.3f} | {min(r['active'] for r in rows)} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--table", default="", help="print a results file as a markdown table, then exit"
    )
    p.add_argument("--encoded")
    p.add_argument("--dataset")
    p.add_argument("--outer")
    p.add_argument("--extra-encoded", default="", help="encodings whose train split is added")
    p.add_argument("--grid", default="broad")
    p.add_argument("--only", default="", help="comma-separated config indices to run")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="sweep.jsonl")
    p.add_argument("--save-best", default="")
    args = p.parse_args()
    if args.table:
        print(table(args.table))
        return
    if not (args.encoded and args.dataset and args.outer):
        p.error("--encoded, --dataset and --outer are required for a sweep")
    configs = list(enumerate(grid(args.grid)))
    if args.only:
        keep = {int(i) for i in args.only.split(",")}
        configs = [c for c in configs if c[0] in keep]
    ctx = mp.get_context("spawn")
    jobs, results = ctx.Queue(), ctx.Queue()
    for c in configs:
        jobs.put(c)
    for _ in range(args.workers):
        jobs.put(None)
    procs = [
        ctx.Process(target=_worker, args=(args, args.device, jobs, results))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    with open(args.out, "a") as fh:
        for _ in configs:
            index, report = results.get()
            report["index"] = index
            report["device"] = args.device
            fh.write(json.dumps(report) + "\n")
            fh.flush()
            print(json.dumps(report), flush=True)
    for proc in procs:
        proc.join()


if __name__ == "__main__":
    main()
