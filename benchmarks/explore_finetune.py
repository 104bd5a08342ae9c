"""Exploration: fine-tune a run's combined model end to end (loss in the STFT domain).

mode inner: only the inner VAE trains, gradients flow through the frozen outer decoder.
mode joint: the inner VAE and the outer decoder train (outer encoder frozen, so encodings are fixed).

Not a target benchmark: the script behind RESULTS.md "End-to-end fine-tuning and refinement".
Usage: .venv/bin/python benchmarks/explore_finetune.py RUN [--mode inner|joint] [--epochs 20]
  [--lr 1e-4] [--refine 100]   (--epochs 0: only compare the two refinement domains)
  [--eq K --eq-db D]   (also train on K EQ copies of each note, the VAE study's copies)
  [--wise 0.5,0.75]    (also score weights between the start and the fine-tuned model)
It prints train/validation/test RMS% with the encoder's mean, with codes refined in the encoded
space (the VAE's own refinement) and refined end to end (through the outer decoder).
The package's version of the inner mode is samplegen.platform.finetune (`samplegen finetune`).
"""

import argparse
import math
import time

import numpy as np
import torch

from samplegen.dsp.equalise import eq_curve_db, eq_seed, equalise
from samplegen.models.artifact import load_model
from samplegen.models.combined import CombinedModel
from samplegen.models.vae import VAE
from samplegen.platform.datasets import load_dataset

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("--mode", default="inner")
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--dec-lr", type=float, default=None)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--eval-every", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--refine", type=int, default=100)
p.add_argument("--eq", type=int, default=0, help="EQ copies of each training note (0: none)")
p.add_argument("--eq-db", type=float, default=8.0, help="each EQ term's standard deviation, dB")
p.add_argument("--eq-seed", type=int, default=0)
p.add_argument(
    "--wise",
    default="",
    help="comma-separated weights a: after training, also score (1 - a) start + a fine-tuned",
)
p.add_argument("--final-splits", default="train,validation,test", help="splits scored at the end")
a = p.parse_args()
if a.eq < 0 or a.eq_db < 0:
    p.error("--eq and --eq-db must be >= 0")
torch.set_num_threads(a.threads)
torch.manual_seed(0)

ds = load_dataset(f"{a.run}/dataset")
comb = load_model(f"{a.run}/models/combined").model
if not isinstance(comb, CombinedModel) or not isinstance(comb.inner, VAE):
    raise SystemExit(f"{a.run}/models/combined: not a combined model with a VAE inside")
outer, inner = comb.outer, comb.inner
N = int(np.prod(ds.codec.shape))
X = {s: torch.as_tensor(ds.splits[s].x) for s in ("train", "validation", "test")}
# Fine-tuning trains on every training row; scores count real notes only, as `samplegen evaluate`
# does (augmented rows, mixes and variation presets, sort last). Until 2026-12-04 train scores
# counted the augmented rows too.
N_REAL = {s: sum(1 for r in ds.splits[s].meta if not r.get("augmented")) for s in X}
assert all(not r.get("augmented") for s in X for r in list(ds.splits[s].meta)[: N_REAL[s]]), (
    "augmented rows are expected after the real notes"
)


@torch.no_grad()
def enc(x):
    return torch.cat([outer.encode(x[i : i + 64]).flatten(1) for i in range(0, len(x), 64)])


H = {s: enc(x) for s, x in X.items()}
lat = outer.latent_shape
# Training rows: the notes, then their EQ copies, drawn as the pipeline's encoder draws them (the
# same seeds per note name and copy), so fine-tuning sees the balances the VAE study saw.
XT, HT = X["train"], H["train"]
if a.eq:
    rows = ds.splits["train"].meta
    copies = []
    for k in range(1, a.eq + 1):
        curves = np.stack(
            [
                eq_curve_db(eq_seed(r["name"], r.get("path"), k, a.eq_seed), ds.codec, a.eq_db)
                for r in rows
            ]
        )
        copies.append(torch.as_tensor(equalise(ds.splits["train"].x, curves, ds.codec)))
    XT = torch.cat([XT, *copies])
    HT = torch.cat([HT, *(enc(c) for c in copies)])
    print(f"training rows: {len(XT)} ({a.eq} EQ copies of each note at {a.eq_db} dB)", flush=True)


def refine_e2e(z0, x):
    z = z0.detach().clone().requires_grad_(True)
    o = torch.optim.Adam([z], lr=inner.hparams.refine_lr)
    with torch.enable_grad():
        for _ in range(a.refine):
            r = outer.decode(inner.decode(z).view(-1, *lat))
            err = (r - x).pow(2).sum() + 0.5 * inner.hparams.beta * z.pow(2).sum()
            (z.grad,) = torch.autograd.grad(err, z)
            o.step()
    return z.detach()


def rms(split, refine=False):
    comb.eval()
    sse = 0.0
    n_real = N_REAL[split]
    for i in range(0, n_real, 64):
        h = H[split][i : min(i + 64, n_real)]
        with torch.no_grad():
            mu = inner.posterior(h)[0]
        if refine == "e2e":
            z = refine_e2e(mu, X[split][i : i + len(h)])
        else:
            z = inner.refine(mu, h) if refine else mu
        with torch.no_grad():
            r = outer.decode(inner.decode(z).view(-1, *lat))
            sse += float((r - X[split][i : i + len(h)]).pow(2).sum())
    return 100 * math.sqrt(sse / n_real / N)


for prm in comb.parameters():
    prm.requires_grad_(False)
params = [{"params": list(inner.parameters()), "lr": a.lr}]
if a.mode == "joint":
    decoder = outer.decoder
    assert isinstance(decoder, torch.nn.Module)  # every outer model's decoder is a submodule
    params.append({"params": list(decoder.parameters()), "lr": a.dec_lr or a.lr})
for g in params:
    for prm in g["params"]:
        prm.requires_grad_(True)
opt = torch.optim.Adam(params)
base_lrs = [g["lr"] for g in opt.param_groups]
beta = inner.hparams.beta
if a.epochs == 0 or a.eq:
    for s in ("validation", "test"):
        print(f"start {s} e2e-refined {rms(s, refine='e2e'):.3f}", flush=True)
print(
    f"start: val {rms('validation'):.3f} test {rms('test'):.3f} train {rms('train'):.3f}",
    flush=True,
)
start_state = {k: v.clone() for k, v in inner.state_dict().items()}
t0 = time.time()
n = len(HT)
for ep in range(1, a.epochs + 1):
    f = 0.5 * (1 + math.cos(math.pi * (ep - 1) / a.epochs))
    for g, b in zip(opt.param_groups, base_lrs, strict=True):
        g["lr"] = b * f
    comb.train()
    perm = torch.randperm(n)
    tot = 0.0
    for i in range(0, n, a.batch):
        idx = perm[i : i + a.batch]
        h, x = HT[idx], XT[idx]
        mu, lv = inner.posterior(h)
        z = mu + torch.randn_like(mu) * (0.5 * lv).exp()
        r = outer.decode(inner.decode(z).view(-1, *lat))
        rec = (r - x).pow(2).flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + lv.exp() - 1 - lv).sum(1).mean()
        loss = rec + beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += float(rec.detach()) * len(idx)
    msg = f"ep {ep} rec {tot / n:.2f} ({100 * math.sqrt(tot / n / N):.3f}%) {time.time() - t0:.0f}s"
    if ep % a.eval_every == 0 or ep == a.epochs:
        msg += f" | val {rms('validation'):.3f} test {rms('test'):.3f}"
    print(msg, flush=True)
for s in [v.strip() for v in a.final_splits.split(",") if v.strip()]:
    print(
        f"final {s}: mean {rms(s):.3f} refined {rms(s, refine=True):.3f}"
        f" e2e-refined {rms(s, refine='e2e'):.3f}",
        flush=True,
    )
# Weight interpolation between the start and the fine-tuned weights (WiSE-FT): fine-tuning from
# one start stays in one basin, and a point between often generalises better than either end.
tuned_state = {k: v.clone() for k, v in inner.state_dict().items()}
for w in [float(v) for v in a.wise.split(",") if v.strip()]:
    inner.load_state_dict(
        {
            k: (1 - w) * start_state[k] + w * t if t.is_floating_point() else t
            for k, t in tuned_state.items()
        }
    )
    print(
        f"wise {w:g}: validation mean {rms('validation'):.3f}"
        f" e2e-refined {rms('validation', refine='e2e'):.3f}"
        f" | test e2e-refined {rms('test', refine='e2e'):.3f}",
        flush=True,
    )
