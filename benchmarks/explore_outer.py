"""Exploration of outer models with a cosine learning rate (not a target benchmark).

Usage: .venv/bin/python benchmarks/explore_outer.py --data RUN/dataset --hp '{"frame_latent": 72,
  "hidden": 512}' --epochs 30 --lr 3e-4 [--out MODEL_DIR]
  [--eq K --eq-db D]   (also train on K EQ copies of each note, the VAE study's copies)
  [--code-noise S]     (train the decoder on codes with Gaussian noise, S times each value's spread)
Prints train/validation/test RMS% every few epochs; the "outer exploration" rows in RESULTS.md.
"""

import argparse
import json
import math
import time

import numpy as np
import torch

from samplegen.models.artifact import save_model
from samplegen.models.registry import build_model
from samplegen.platform.datasets import load_dataset
from samplegen.platform.encoded import EqAugment

p = argparse.ArgumentParser()
p.add_argument("--data", default="runs/quick/dataset")
p.add_argument("--model", default="frame_ae")
p.add_argument("--hp", default='{"frame_latent": 72, "hidden": 512, "depth": 2, "context": 3}')
p.add_argument("--epochs", type=int, default=40)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--out", default=None)
p.add_argument("--eval-every", type=int, default=5)
# K copies of each training note through random EQ curves (--eq-db per cosine term), drawn as the
# pipeline's VAE study draws them (samplegen.platform.encoded.EqAugment, the same seeds), added
# to the training rows; RMS% on train stays on the notes alone.
p.add_argument("--eq", type=int, default=0)
p.add_argument("--eq-db", type=float, default=8.0)
# Training only: Gaussian noise on the codes before decoding, S times each code value's standard
# deviation over the batch and frames, so the decoder maps codes near the notes' codes to sounds
# near theirs, and an inner model's imperfect codes decode to nearer sounds.
p.add_argument("--code-noise", type=float, default=0.0)
a = p.parse_args()
if a.code_noise < 0:
    p.error(f"--code-noise: must be >= 0 (times each value's spread), got {a.code_noise}")
if a.eq < 0 or a.eq_db < 0:
    p.error("--eq and --eq-db must be >= 0")
torch.set_num_threads(2)
torch.set_flush_denormal(True)
ds = load_dataset(a.data)
X = {s: ds.splits[s].x for s in ("train", "validation", "test")}
N = int(np.prod(ds.codec.shape))
TRAIN = X["train"]
if a.eq:
    _, _copies = EqAugment(a.eq, a.eq_db).copies(TRAIN, ds.splits["train"].meta, ds.codec)
    TRAIN = np.concatenate([TRAIN, _copies])
    print(
        f"training rows: {len(TRAIN)} ({a.eq} EQ copies of each note at {a.eq_db} dB)", flush=True
    )
torch.manual_seed(0)
m = build_model(a.model, json.loads(a.hp), X["train"].shape[1:])
print("params", sum(p.numel() for p in m.parameters()), flush=True)
opt = torch.optim.Adam(m.parameters(), lr=a.lr)


@torch.no_grad()
def rms(x):
    m.eval()
    tot = 0.0
    for i in range(0, len(x), 64):
        xb = torch.as_tensor(x[i : i + 64])
        tot += float((m.decode(m.encode(xb)) - xb).pow(2).sum())
    return 100 * math.sqrt(tot / len(x) / N)


t0 = time.time()
rng = np.random.default_rng(0)
for ep in range(1, a.epochs + 1):
    lr = a.lr * 0.5 * (1 + math.cos(math.pi * (ep - 1) / a.epochs))
    for g in opt.param_groups:
        g["lr"] = lr
    m.train()
    perm = rng.permutation(len(TRAIN))
    for i in range(0, len(perm), a.batch):
        xb = torch.as_tensor(TRAIN[np.sort(perm[i : i + a.batch])])
        z = m.encode(xb)
        if a.code_noise:
            spread = z.detach().std(dim=(0, 2), keepdim=True) if z.ndim == 3 else z.detach().std(0)
            z = z + a.code_noise * spread * torch.randn_like(z)
        loss = (m.decode(z) - xb).pow(2).flatten(1).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if ep % a.eval_every == 0 or ep == a.epochs:
        r = {s: rms(x) for s, x in X.items()}
        print(
            f"ep {ep} "
            + " ".join(f"{s} {v:.3f}%" for s, v in r.items())
            + f" {time.time() - t0:.0f}s",
            flush=True,
        )
if a.out:
    save_model(a.out, m, codec=ds.codec, dataset_fingerprint=ds.fingerprint)
    with torch.no_grad():
        m.eval()
        codes = {
            s: np.concatenate(
                [m.encode(torch.as_tensor(x[i : i + 64])).numpy() for i in range(0, len(x), 64)]
            ).reshape(len(x), -1)
            for s, x in X.items()
        }
    # allow_pickle=True is numpy's default; named, mypy knows no split name can stand for it.
    np.savez(a.out + "/encodings.npz", allow_pickle=True, **codes)
print(json.dumps(vars(a)))
