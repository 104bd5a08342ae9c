"""Exploration: fine-tune the chain's frame decoder on the codes it is used with (refined codes).

The combined model decodes refined codes at evaluation, but its decoder trained on sampled encoder
codes. Here: refine every training note's code end to end, train the inner decoder for a few
epochs on (refined code -> note, through the frozen outer decoder), refine again, repeat.
Validation and test are scored as `samplegen evaluate` scores them (refined from the encoder's
mean). Usage: .venv/bin/python benchmarks/explore_glo.py RUN [--rounds 2] [--epochs 10] [--lr 1e-4]

Exploration, not a package feature: RESULTS.md "Fine-tuning the frame decoder on refined codes".
"""

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import torch

from samplegen.models.artifact import load_model
from samplegen.models.refine import refine_codes
from samplegen.platform.datasets import load_dataset

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--train-limit", type=int, default=0)
a = p.parse_args()
torch.manual_seed(a.seed)
model: Any = load_model(f"{a.run}/models/combined").model.eval()
ds = load_dataset(f"{a.run}/dataset", splits=["train", "validation", "test"])


def rows(split, real_only):
    s = ds.splits[split]
    keep = [
        i
        for i, m in enumerate(s.meta)
        if not (real_only and m.get("augmented")) and m.get("mix") is None
    ]
    return np.asarray(np.asarray(s.x)[keep], np.float32)


# The notes and the variation presets' notes: what the VAE trained on, less the EQ copies.
xtr = rows("train", False)
if a.train_limit:
    xtr = xtr[: a.train_limit]
xva = rows("validation", True)
xte = rows("test", True)
vps = math.prod(xva.shape[1:])
settings = model.inner.refinement()
print("refinement", settings, "train rows", len(xtr), flush=True)


def codes(x, start=None):
    out = []
    for s in range(0, len(x), 16):
        xb = torch.from_numpy(x[s : s + 16])
        with torch.no_grad():
            flat = model.outer.encode(xb).flatten(1)
            z0 = model.inner.encode_amortized(flat) if start is None else start[s : s + 16]
        out.append(refine_codes(model.decode, z0, xb, settings))
    return torch.cat(out)


def rms(x, z):
    with torch.no_grad():
        sse = torch.cat(
            [
                ((model.decode(z[s : s + 64]) - torch.from_numpy(x[s : s + 64])) ** 2)
                .flatten(1)
                .sum(1)
                for s in range(0, len(x), 64)
            ]
        )
    return 100 * math.sqrt(float(sse.mean()) / vps)


def score(tag):
    t = time.time()
    r = {"val": rms(xva, codes(xva)), "test": rms(xte, codes(xte))}
    print(
        tag,
        json.dumps({k: round(v, 4) for k, v in r.items()}),
        f"{time.time() - t:.0f}s",
        flush=True,
    )
    return r


score("start")
params = list(model.inner.decoder.parameters())
for rnd in range(a.rounds):
    t = time.time()
    z = codes(xtr)
    print(
        f"round {rnd}: train codes refined in {time.time() - t:.0f}s; train rms {rms(xtr, z):.4f}",
        flush=True,
    )
    opt = torch.optim.Adam(params, lr=a.lr)
    model.train()  # no dropout in this model; train mode only for autograd bookkeeping
    for ep in range(a.epochs):
        perm = torch.randperm(len(xtr))
        tot = 0.0
        for s in range(0, len(xtr), a.batch):
            idx = perm[s : s + a.batch]
            xb = torch.from_numpy(xtr[idx.numpy()])
            loss = ((model.decode(z[idx]) - xb) ** 2).sum() / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        print(
            f"  epoch {ep}: train sse/note {tot / len(xtr):.2f} -> rms {100 * math.sqrt(tot / len(xtr) / vps):.4f}",
            flush=True,
        )
    model.eval()
    score(f"after round {rnd}")
