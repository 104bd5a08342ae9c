"""Exploration of inner models on a run's outer encodings, scored end to end (outer units).

Not a target benchmark: the script behind the "inner-model exploration" table in RESULTS.md.
Usage: .venv/bin/python benchmarks/explore_inner.py --run RUN [--outer MODEL] [--baselines]
  [--epochs 100] [--beta 0.1] [--cond note,velocity,pitch] [--arch mlp|conv|field|fieldskip] [--pca K]
  [--refine N] [--refine-mode encoded|e2e] [--refine-every K]
  [--extra LIBRARY_FOLDER] ...
`--extra` adds every note of a folder written by `samplegen library --out` (or render_extra.py) to
the training rows, flagged as augmented, so "orig" reports the training notes alone.
It encodes RUN/dataset with the outer model (default RUN/models/outer), trains one VAE variant with
a cosine learning rate and prints train/validation/test RMS% through the frozen outer decoder.
"""

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from samplegen.dsp.audio import load_wave
from samplegen.dsp.codec import encode_batch, magnitude
from samplegen.dsp.equalise import TERMS, eq_basis, equalise
from samplegen.dsp.library import note_to_midi
from samplegen.models.artifact import load_model
from samplegen.models.frame_decoder import FrameDecoder, time_features
from samplegen.models.refine import Refinement, refine_codes
from samplegen.platform.datasets import load_dataset

p = argparse.ArgumentParser()
p.add_argument("--run", default="runs/quick")
p.add_argument("--data", default=None)
p.add_argument("--outer", default=None)
p.add_argument("--epochs", type=int, default=150)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--beta", type=float, default=1.0)
p.add_argument("--free-bits", type=float, default=0.0)
p.add_argument("--warmup", type=int, default=20)
p.add_argument("--hidden", default="1024,256")
p.add_argument("--cond", default="")  # note,velocity,pitch
p.add_argument("--extra", default=None)  # a rendered library folder added to train (augmented)
p.add_argument("--latent", type=int, default=8)
p.add_argument("--baselines", action="store_true")
p.add_argument("--standardize", action="store_true")
p.add_argument("--dropout", type=float, default=0.0)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--act", default="relu")
p.add_argument("--arch", default="mlp")
p.add_argument("--refine", type=int, default=0)
# encoded: fit the outer encoding (the first method); e2e: fit the input through the frozen outer
# decoder, as the package's combined model does (prior weight beta / 2)
p.add_argument("--refine-mode", choices=("encoded", "e2e"), default="encoded")
# also refine validation and test every K epochs (0: only after training), to see which epoch
# the refined figures would pick
p.add_argument("--refine-every", type=int, default=0)
p.add_argument("--pca", type=int, default=0)
p.add_argument("--ch", type=int, default=128)  # conv channels (--arch conv)
p.add_argument("--e2e-epochs", type=int, default=0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--field-hidden", type=int, default=512)
p.add_argument("--field-depth", type=int, default=3)
# K random equalisations of every training note added to train (augmented): smooth gain curves
# over log frequency, --eq-db standard deviation per cosine term (samplegen.dsp.equalise). RESULTS'
# EQ rows were run with the script's first copy of this code: the same draws and curves, with the
# gains rounded to float32 after, not before, taking them out of dB.
p.add_argument("--eq", type=int, default=0)
p.add_argument("--eq-db", type=float, default=4.0)
p.add_argument("--eq-terms", type=int, default=4)  # cosine terms per curve (finer balances)
# Each EQ copy also gets a gain that changes linearly through the note: at the last frame each
# bin is off by a 2-term curve over log frequency with --decay-db per term (0 at the first frame),
# so copies decay faster or slower, and their highs faster or slower than their lows.
p.add_argument("--decay-db", type=float, default=0.0)
# Each EQ copy also gets a moving filter: a second 4-term curve with --sweep-db per term, scaled by a
# slow sine through the note (0.25-1.5 cycles, random phase), as a pad's swept filter moves.
p.add_argument("--sweep-db", type=float, default=0.0)
# The static curve of each EQ copy moves the note's balance part of the way (uniform 0..1) towards
# another training note's at the same pitch (another instrument), smoothed to the curve's cosine
# terms, instead of drawing the terms at random: balances real instruments have.
p.add_argument("--eq-from-notes", action="store_true")
# Average the weights at the end of every epoch from this one on and score the average (stochastic
# weight averaging, Izmailov et al. 2018; 0: the last epoch's weights, as before).
p.add_argument("--swa-from", type=int, default=0)
# K frame decoders (--arch field) on one encoder, each trained to fit the notes alone (an ensemble
# sharing one latent space); the model's output, and what codes are refined through, is their mean.
p.add_argument("--heads", type=int, default=1)
# A learning curve over instruments: train on a random fraction of the training split's programs
# (whole groups, drawn with --programs-seed); validation and test are unchanged.
p.add_argument("--programs", type=float, default=1.0)
p.add_argument("--programs-seed", type=int, default=0)
# Would training on the validation instruments too (a refit after selection) reach instruments
# never trained on further? --val-folds 2 splits validation's instruments into two folds (seeded,
# whole groups) and scores each fold's refined RMS% on its own; --val-fold K also moves fold K's
# notes into training, as real training notes (EQ copies included), so only the other fold is a
# held-out score. Test is scored as always.
p.add_argument("--val-folds", type=int, default=0)
p.add_argument("--val-fold", type=int, default=None)
a = p.parse_args()
if not 0.0 < a.programs <= 1.0:
    p.error(f"--programs: a fraction of the training programs in (0, 1], got {a.programs}")
if a.val_fold is not None and not 0 <= a.val_fold < a.val_folds:
    p.error(
        f"--val-fold: must be in 0..{a.val_folds - 1} (give --val-folds K >= 2), got {a.val_fold}"
    )
if a.val_folds == 1 or a.val_folds < 0:
    p.error(f"--val-folds: 0 (off) or at least 2, got {a.val_folds}")
if a.eq_terms < 1:
    p.error(f"--eq-terms: must be >= 1 (cosine terms per curve), got {a.eq_terms}")
if a.decay_db < 0:
    p.error(f"--decay-db: must be >= 0 (dB per term at the last frame), got {a.decay_db}")
if a.decay_db and not a.eq:
    p.error("--decay-db: applies to the EQ copies; give --eq K too")
if a.sweep_db < 0 or (a.sweep_db and not a.eq):
    p.error("--sweep-db: must be >= 0 and applies to the EQ copies (give --eq K too)")
if a.heads < 1 or (a.heads > 1 and a.arch != "field"):
    p.error(f"--heads: must be >= 1, and more than 1 needs --arch field (got {a.heads}, {a.arch})")
if a.refine and a.arch == "conv":
    p.error("--refine: --arch conv has no decoder of the code alone; use mlp, field or fieldskip")
if not 0 <= a.swa_from <= a.epochs + a.e2e_epochs:
    p.error(f"--swa-from: 0 (off) or an epoch in 1..{a.epochs + a.e2e_epochs}, got {a.swa_from}")
if a.refine_mode == "e2e" and a.pca:
    p.error("--refine-mode e2e: the outer decoder needs whole codes, not --pca coordinates")
torch.set_num_threads(2)
torch.set_flush_denormal(True)

ds = load_dataset(a.data or f"{a.run}/dataset")
outer = load_model(a.outer or f"{a.run}/models/outer").model
N = int(np.prod(ds.codec.shape))


X = {s: ds.splits[s].x for s in ("train", "validation", "test")}
META = {s: ds.splits[s].meta for s in X}
if a.programs < 1.0:
    _groups = sorted({m["group"] for m in META["train"]})
    _kept = set(
        np.random.default_rng(a.programs_seed)
        .permutation(_groups)[: max(1, round(a.programs * len(_groups)))]
        .tolist()
    )
    _rows = [i for i, m in enumerate(META["train"]) if m["group"] in _kept]
    X["train"] = X["train"][_rows]
    META["train"] = [META["train"][i] for i in _rows]
    print(
        f"programs: {len(_kept)} of {len(_groups)} training groups, {len(_rows)} notes "
        f"(--programs-seed {a.programs_seed})",
        flush=True,
    )

val_folds = None  # each validation row's fold (--val-folds)
if a.val_folds:
    # The same halves as refit_folds.py scores the pipeline's refit on.
    from refit_folds import fold_of_groups

    _fold_of = fold_of_groups([m["group"] for m in META["validation"]], a.val_folds)
    val_folds = np.array([_fold_of[m["group"]] for m in META["validation"]])
    for k in range(a.val_folds):
        names = sorted(
            {m["group"] for m, f in zip(META["validation"], val_folds, strict=True) if f == k}
        )
        print(f"validation fold {k}: {int((val_folds == k).sum())} notes of {', '.join(names)}")
    if a.val_fold is not None:
        _moved = val_folds == a.val_fold
        # Real notes of the training split from here on: EQ copies are made of them, and the
        # "orig" figure counts them.
        X["train"] = np.concatenate([X["train"], X["validation"][_moved]])
        META["train"] = list(META["train"]) + [
            m for m, k in zip(META["validation"], _moved, strict=True) if k
        ]
        X["validation"] = X["validation"][~_moved]
        META["validation"] = [m for m, k in zip(META["validation"], _moved, strict=True) if not k]
        val_folds = val_folds[~_moved]
        print(f"moved fold {a.val_fold} into training: {int(_moved.sum())} notes", flush=True)


def load_extra(folder):
    """Every note of a rendered library folder, as augmented training rows (note from the name)."""
    with open(Path(folder) / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    waves = np.stack([load_wave(Path(folder) / r["file"], ds.codec)[0] for r in rows])
    x = np.concatenate(
        [encode_batch(waves[i : i + 64], ds.codec) for i in range(0, len(waves), 64)]
    ).astype(np.float32)
    meta = [
        {"note": note_to_midi(r["note"]), "velocity": int(r["velocity"]), "augmented": True}
        for r in rows
    ]
    return x, meta


if a.extra:
    _x, _m = load_extra(a.extra)
    print(f"extra: {len(_x)} notes from {a.extra}", flush=True)
    X["train"] = np.concatenate([X["train"], _x])
    META["train"] = list(META["train"]) + _m


def balance_db(x):
    """Each note's mean power spectrum in dB over its frames, floored 80 dB below its peak bin's,
    (N, bins): a silent band reads as -80 dB, not as minus infinity."""
    power = (magnitude(x, ds.codec).astype(np.float64) ** 2).mean(2)
    level = 10 * np.log10(np.maximum(power, 1e-20))
    return np.maximum(level, level.max(1, keepdims=True) - 80.0)


def balance_peers(x, meta):
    """Each note's balance (balance_db) and the training notes of its pitch and another
    instrument: what towards_others draws from, the same for every copy."""
    peers = [
        [j for j, o in enumerate(meta) if o["note"] == m["note"] and o["group"] != m["group"]]
        for m in meta
    ]
    return balance_db(x), peers


def towards_others(levels, peers, basis, rng):
    """Curves (N, bins) moving each note's balance a random part (uniform 0..1) of the way towards
    another training note of the same pitch and another instrument, in the span of `basis` (least
    squares over the bins above 40 Hz, a constant term fitted and dropped; at most 30 dB a term)."""
    above = basis[0] < 1.0
    fit = np.concatenate([np.ones((1, basis.shape[1])), basis])[:, above].T
    curves = np.zeros((len(levels), basis.shape[1]))
    for i, others in enumerate(peers):
        j = others[rng.integers(len(others))]
        coef, *_ = np.linalg.lstsq(fit, (levels[j] - levels[i])[above], rcond=None)
        curves[i] = rng.uniform() * (np.clip(coef[1:], -30.0, 30.0) @ basis)
    return curves


def equalised(x, k, db, seed, meta):
    """k copies of each note through random EQ curves (samplegen.dsp.equalise), re-encoded."""
    rng = np.random.default_rng(seed)
    basis = eq_basis(ds.codec, a.eq_terms)
    # A constant and a tilt over log frequency, for the change through the note.
    decay_basis = np.concatenate([np.ones((1, basis.shape[1])), eq_basis(ds.codec, 1)])
    sweep_basis = eq_basis(ds.codec, TERMS)
    ramp = np.linspace(0.0, 1.0, x.shape[2])
    balances = balance_peers(x, meta) if a.eq_from_notes else None
    copies = []
    for _ in range(k):
        if balances is not None:
            curves = towards_others(*balances, basis, rng)
        else:
            curves = rng.normal(0.0, db, (len(x), len(basis))) @ basis
        if a.decay_db:
            decay = rng.normal(0.0, a.decay_db, (len(x), 2)) @ decay_basis
            curves = curves[:, :, None] + decay[:, :, None] * ramp
        if a.sweep_db:
            moving = rng.normal(0.0, a.sweep_db, (len(x), TERMS)) @ sweep_basis
            cycles = rng.uniform(0.25, 1.5, (len(x), 1))
            phase = rng.uniform(0.0, 2 * np.pi, (len(x), 1))
            wave = np.sin(2 * np.pi * cycles * ramp[None] + phase)
            curves = (curves if curves.ndim == 3 else curves[:, :, None]) + (
                moving[:, :, None] * wave[:, None, :]
            )
        copies.append(equalise(x, curves, ds.codec))
    return np.concatenate(copies)


if a.eq:
    _n = len(X["train"])
    _keep = [not m.get("augmented") for m in META["train"]]
    _x = equalised(
        X["train"][_keep],
        a.eq,
        a.eq_db,
        a.seed,
        [m for m, k in zip(META["train"], _keep, strict=True) if k],
    )
    print(
        f"eq: {len(_x)} equalised training notes ({a.eq} per note, {a.eq_db} dB, {a.eq_terms} terms, decay {a.decay_db} dB, sweep {a.sweep_db} dB)",
        flush=True,
    )
    _src = [m for m in META["train"] if not m.get("augmented")]
    X["train"] = np.concatenate([X["train"], _x])
    META["train"] = list(META["train"]) + [
        dict(m, augmented=True) for _ in range(a.eq) for m in _src
    ]


@torch.no_grad()
def encode_all(x):
    return np.concatenate(
        [outer.encode(torch.as_tensor(x[i : i + 64])).numpy() for i in range(0, len(x), 64)]
    )


Z = {s: encode_all(x) for s, x in X.items()}
lat_shape = Z["train"].shape[1:]
Z = {s: z.reshape(len(z), -1) for s, z in Z.items()}
_orig = np.array([not m.get("augmented") for m in META["train"]])
if not _orig.all():
    X["orig"] = X["train"][_orig]
    Z["orig"] = Z["train"][_orig]
    META["orig"] = [m for m, o in zip(META["train"], _orig, strict=False) if o]


@torch.no_grad()
def e2e(zhat, x):
    out = []
    for i in range(0, len(zhat), 64):
        zb = torch.as_tensor(np.asarray(zhat[i : i + 64], np.float32)).reshape(-1, *lat_shape)
        r = outer.decode(zb).numpy()
        out.append(((r - x[i : i + 64]) ** 2).reshape(len(r), -1).sum(1))
    loss = np.concatenate(out)
    return loss, 100 * math.sqrt(loss.mean() / N)


def cond_of(split):
    cols = []
    if "note" in a.cond:
        notes = np.array([m["note"] or 0 for m in META[split]])
        cols.append(np.stack([notes == n for n in (48, 60, 72)], 1))
    if "pitch" in a.cond:
        notes = np.array([m["note"] or 60 for m in META[split]], np.float32)
        cols.append(((notes - 60) / 12)[:, None])
    if "velocity" in a.cond:
        v = np.array([m["velocity"] or 0 for m in META[split]])
        cols.append(np.stack([v == n for n in (64, 100, 127)], 1))
    if not cols:
        return np.zeros((len(META[split]), 0), np.float32)
    return np.concatenate(cols, 1).astype(np.float32)


C = {s: cond_of(s) for s in X}

if a.baselines:
    for s in X:
        print(f"outer-only {s}: {e2e(Z[s], X[s])[1]:.3f}%")
    mean = Z["train"].mean(0)
    _, sv, vt = np.linalg.svd(Z["train"] - mean, full_matrices=False)
    for k in (8, 16, 32, 926):
        comp = vt[:k]
        r = {s: e2e((Z[s] - mean) @ comp.T @ comp + mean, X[s])[1] for s in X}
        print(f"pca{k}: " + " ".join(f"{s} {v:.3f}%" for s, v in r.items()), flush=True)
    # note-conditioned linear: per-note mean + PCA-8 of residuals
    if "note" in a.cond:
        ci = {s: C[s][:, :3].argmax(1) for s in X}
        means = np.stack([Z["train"][ci["train"] == j].mean(0) for j in range(3)])
        res = Z["train"] - means[ci["train"]]
        _, sv, vt = np.linalg.svd(res, full_matrices=False)
        comp = vt[:8]
        r = {}
        for s in X:
            rs = Z[s] - means[ci[s]]
            r[s] = e2e(rs @ comp.T @ comp + means[ci[s]], X[s])[1]
        print("note-mean+pca8: " + " ".join(f"{s} {v:.3f}%" for s, v in r.items()), flush=True)
    raise SystemExit

BACK = None
if a.pca:
    _mean = Z["train"].mean(0)
    _, _, _vt = np.linalg.svd(Z["train"] - _mean, full_matrices=False)
    _V = _vt[: a.pca]
    Zc = {s: (Z[s] - _mean) @ _V.T for s in Z}
    BACK = lambda c: c @ _V + _mean  # noqa: E731
else:
    Zc = Z
mu_z = Zc["train"].mean(0)
sd_z = Zc["train"].std(0) + 1e-3 if a.standardize else np.ones_like(mu_z)
norm = {s: ((Zc[s] - mu_z) / sd_z).astype(np.float32) for s in X}
D = norm["train"].shape[1]
nc = C["train"].shape[1]
hid = [int(h) for h in a.hidden.split(",") if h]
Act = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}[a.act]


def mlp(sizes, last_act=False):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(Act())
            if a.dropout:
                layers.append(nn.Dropout(a.dropout))
    return nn.Sequential(*layers)


class CVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = mlp([D + nc] + hid, last_act=True)
        self.mu = nn.Linear(hid[-1], a.latent)
        self.lv = nn.Linear(hid[-1], a.latent)
        self.dec = mlp([a.latent + nc] + hid[::-1] + [D])

    def forward(self, x, c):
        h = self.enc(torch.cat([x, c], 1))
        mu, lv = self.mu(h), self.lv(h)
        z = mu + torch.randn_like(mu) * (0.5 * lv).exp() if self.training else mu
        return self.dec(torch.cat([z, c], 1)), mu, lv


class ConvVAE(nn.Module):
    """Temporal conv VAE over (frame_latent, frames) codes."""

    def __init__(self):
        super().__init__()
        F, T = lat_shape
        ch = a.ch
        self.F, self.T = F, T
        self.enc = nn.Sequential(
            nn.Conv1d(F + nc, ch, 5, padding=2),
            Act(),
            nn.Conv1d(ch, ch, 4, stride=2, padding=1),
            Act(),
            nn.Conv1d(ch, ch, 4, stride=2, padding=1),
            Act(),
            nn.Conv1d(ch, ch, 4, stride=2, padding=1),
            Act(),
        )
        with torch.no_grad():
            t = self.enc(torch.zeros(1, F + nc, T)).shape[-1]
        self.t = t
        self.mu = nn.Linear(ch * t, a.latent)
        self.lv = nn.Linear(ch * t, a.latent)
        self.fc = nn.Sequential(
            nn.Linear(a.latent + nc, hid[0]), Act(), nn.Linear(hid[0], ch * 11), Act()
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose1d(ch + nc, ch, 4, stride=2, padding=1),
            Act(),
            nn.ConvTranspose1d(ch, ch, 4, stride=2, padding=1),
            Act(),
            nn.ConvTranspose1d(ch, ch, 4, stride=2, padding=1),
            Act(),
            nn.Conv1d(ch, F, 5, padding=2),
        )

    def forward(self, x, c):
        B = x.shape[0]
        xi = x.reshape(B, self.F, self.T)
        ci = c[:, :, None].expand(B, c.shape[1], self.T)
        h = self.enc(torch.cat([xi, ci], 1)).flatten(1)
        mu, lv = self.mu(h), self.lv(h)
        z = mu + torch.randn_like(mu) * (0.5 * lv).exp() if self.training else mu
        g = self.fc(torch.cat([z, c], 1)).reshape(B, -1, 11)
        g = torch.cat([g, c[:, :, None].expand(B, c.shape[1], 11)], 1)
        out = self.dec(g)[:, :, : self.T]
        return out.reshape(B, -1), mu, lv


class MeanOfDecoders(nn.Module):
    """--heads: the mean of several frame decoders; in training it keeps every decoder's output
    (`each`, (K, B, D)), since each decoder's own error is the loss."""

    def __init__(
        self, k: int, latent: int, values: int, frames: int, hidden: int, depth: int
    ) -> None:
        super().__init__()
        self.decoders = nn.ModuleList(
            [FrameDecoder(latent, values, frames, hidden, depth) for _ in range(k)]
        )
        self.each: torch.Tensor | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([d(z) for d in self.decoders])
        self.each = outs if self.training else None
        return outs.mean(0)


class FieldVAE(CVAE):
    """MLP encoder; the package's frame decoder (samplegen.models.frame_decoder: one MLP shared by
    every frame, fed the code and 32 features of the frame's position)."""

    def __init__(self):
        super().__init__()
        F, T = lat_shape
        args = (a.latent + nc, F, T, a.field_hidden, a.field_depth)
        self.dec = FrameDecoder(*args) if a.heads == 1 else MeanOfDecoders(a.heads, *args)


class SkipFrameDecoder(nn.Module):
    """The frame decoder with the code (and the frame's time features) fed to every hidden layer,
    not only the first: deep layers see z directly (as in skip-VAEs)."""

    def __init__(self, latent, values, frames, hidden, depth):
        super().__init__()
        self.values, self.frames = values, frames
        self.register_buffer("time", time_features(frames), persistent=False)
        k = latent + self.time.shape[1]
        self.layers = nn.ModuleList(
            [nn.Linear(k if i == 0 else hidden + k, hidden) for i in range(depth)]
        )
        self.out = nn.Linear(hidden + k, values)

    def forward(self, z):
        b = z.shape[0]
        cond = torch.cat(
            [z[:, None, :].expand(b, self.frames, z.shape[1]), self.time[None].expand(b, -1, -1)],
            2,
        )
        h = torch.relu(self.layers[0](cond))
        for layer in self.layers[1:]:
            h = torch.relu(layer(torch.cat([h, cond], 2)))
        out = self.out(torch.cat([h, cond], 2))
        return out.transpose(1, 2).reshape(b, self.values * self.frames)


class FieldSkipVAE(CVAE):
    """MLP encoder; SkipFrameDecoder."""

    def __init__(self):
        super().__init__()
        F, T = lat_shape
        self.dec = SkipFrameDecoder(a.latent + nc, F, T, a.field_hidden, a.field_depth)


torch.manual_seed(a.seed)
m = {"mlp": CVAE, "conv": ConvVAE, "field": FieldVAE, "fieldskip": FieldSkipVAE}[a.arch]()
opt = torch.optim.Adam(m.parameters(), lr=a.lr, weight_decay=a.wd)
w_sd = torch.as_tensor(sd_z.astype(np.float32))
tx, tc = torch.as_tensor(norm["train"]), torch.as_tensor(C["train"])
print("params", sum(p.numel() for p in m.parameters()), flush=True)


def predict(split):
    m.eval()
    with torch.no_grad():
        r, mu, lv = m(torch.as_tensor(norm[split]), torch.as_tensor(C[split]))
    out = r.numpy() * sd_z + mu_z
    return (BACK(out) if BACK is not None else out), mu.numpy(), lv.numpy()


def refined(split, chunk=64):
    """RMS% of `split` after a.refine Adam steps on each code from the encoder's mean
    (samplegen.models.refine, as the package refines), and the mean |z| after and before.

    In chunks of `chunk` notes: each code has its own loss term and Adam is element-wise, so a
    code does not depend on its chunk; whole splits through the outer decoder are slow.
    """
    m.eval()
    shift, scale = torch.as_tensor(mu_z), w_sd
    if a.refine_mode == "e2e":
        settings = Refinement(a.refine, 0.05, a.beta / 2)
    else:
        settings = Refinement(a.refine, 0.05, 0.1)
    outs, zs, mus = [], [], []
    for i in range(0, len(norm[split]), chunk):
        xs = torch.as_tensor(norm[split][i : i + chunk])
        cs = torch.as_tensor(C[split][i : i + chunk])
        with torch.no_grad():
            _, mu0, _ = m(xs, cs)
        if a.refine_mode == "e2e":
            z = refine_codes(
                lambda z, cs=cs: outer.decode(
                    (m.dec(torch.cat([z, cs], 1)) * scale + shift).reshape(-1, *lat_shape)
                ),
                mu0,
                torch.as_tensor(X[split][i : i + chunk]),
                settings,
            )
        else:
            z = refine_codes(
                lambda z, cs=cs: m.dec(torch.cat([z, cs], 1)) * scale, mu0, xs * scale, settings
            )
        with torch.no_grad():
            outs.append(m.dec(torch.cat([z, cs], 1)).numpy() * sd_z + mu_z)
        zs.append(z)
        mus.append(mu0)
    out = np.concatenate(outs)
    zz = BACK(out) if BACK is not None else out
    z, mu0 = torch.cat(zs), torch.cat(mus)
    loss, rms = e2e(zz, X[split])
    if split == "validation" and val_folds is not None:
        folds = " ".join(
            f"fold {k} {100 * math.sqrt(loss[val_folds == k].mean() / N):.3f}%"
            for k in sorted(set(val_folds.tolist()))
        )
        print(f"refined validation by fold: {folds}", flush=True)
    return rms, float(z.norm(dim=1).mean()), float(mu0.norm(dim=1).mean())


t0 = time.time()
total_epochs = a.epochs + a.e2e_epochs
swa: dict[str, torch.Tensor] | None = None  # --swa-from: the averaged weights
for ep in range(1, total_epochs + 1):
    lr = a.lr * 0.5 * (1 + math.cos(math.pi * (ep - 1) / total_epochs))
    for g in opt.param_groups:
        g["lr"] = lr
    m.train()
    perm = torch.randperm(len(tx))
    kw = min(1.0, ep / a.warmup) * a.beta
    tot = 0.0
    for i in range(0, len(perm), a.batch):
        idx = perm[i : i + a.batch]
        x, c = tx[idx], tc[idx]
        r, mu, lv = m(x, c)
        if ep > a.epochs:
            zr = (r * w_sd + torch.as_tensor(mu_z)).reshape(-1, *lat_shape)
            zt = (x * w_sd + torch.as_tensor(mu_z)).reshape(-1, *lat_shape)
            with torch.no_grad():
                target = torch.as_tensor(X["train"][idx.numpy()])
            rec = (outer.decode(zr) - target).pow(2).flatten(1).sum(1).mean()
        elif a.heads > 1:
            heads = m.dec
            # --heads > 1 needs --arch field, whose decoder keeps each head's output in training.
            assert isinstance(heads, MeanOfDecoders) and heads.each is not None
            rec = ((heads.each - x) * w_sd).pow(2).sum(2).mean()
        else:
            rec = ((r - x) * w_sd).pow(2).sum(1).mean()
        kld = 0.5 * (mu.pow(2) + lv.exp() - 1 - lv).mean(0)
        if a.free_bits:
            kld = kld.clamp(min=a.free_bits)
        loss = rec + kw * kld.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += float(rec.detach()) * len(idx)
    if ep % 25 == 0 or ep == total_epochs:
        res = {s: e2e(predict(s)[0], X[s])[1] for s in X if not (s == "train" and "orig" in X)}
        _, mu, lv = predict("train")
        active = int((mu.var(0) > 0.01).sum())
        kl = 0.5 * (mu**2 + np.exp(lv) - 1 - lv).mean(0)
        print(
            f"ep {ep} rec {tot / len(tx):.2f} "
            + " ".join(f"{s} {v:.3f}%" for s, v in res.items())
            + f" active {active} kl {kl.sum():.1f} {time.time() - t0:.0f}s",
            flush=True,
        )
    if a.swa_from and ep >= a.swa_from:
        # Running mean of the weights at the end of epochs swa_from..ep.
        _w = 1.0 / (ep - a.swa_from + 1)
        swa = {
            k: v.detach().clone() if swa is None else swa[k] + (v.detach() - swa[k]) * _w
            for k, v in m.state_dict().items()
        }
    if a.refine and a.refine_every and ep % a.refine_every == 0 and ep < total_epochs:
        figs = " ".join(f"{s} {refined(s)[0]:.3f}%" for s in ("validation", "test"))
        print(f"ep {ep} refined {figs}", flush=True)
if swa is not None:  # --swa-from, checked above to fall within the epochs
    m.load_state_dict(swa)
    res = {s: e2e(predict(s)[0], X[s])[1] for s in X if not (s == "train" and "orig" in X)}
    print(
        f"swa of epochs {a.swa_from}-{total_epochs}: "
        + " ".join(f"{s} {v:.3f}%" for s, v in res.items()),
        flush=True,
    )
if a.refine:
    for p_ in m.parameters():
        p_.requires_grad_(False)
    for split in ("orig", "train", "validation", "test"):
        if split not in X or (split == "train" and "orig" in X):
            continue
        rms, zn, mn = refined(split)
        print(f"refined {split}: {rms:.3f}% |z| {zn:.2f} vs {mn:.2f}", flush=True)
print(json.dumps(vars(a)))
