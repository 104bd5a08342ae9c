"""Research: fine-tune a waveform-path VAE end to end, through the frozen outer decoder, on a
spectral loss. Not a target benchmark.

Usage: .venv/bin/python benchmarks/wave_e2e.py RUN [--epochs 10] [--spectral-weight 1000]
       [--beta 1.0] [--lr 3e-4] [--seed 0]

RUN is a `wave_quality.py` run: its `models/combined_base` (outer audio_conv_ae + chained VAE) and
its `dataset`. The chained study trains the VAE on outer codes with code-space SSE. This script
starts from those weights, keeps the outer model frozen, and trains only the VAE. Each step encodes
a batch with the outer encoder, samples z from the VAE posterior, and decodes a waveform through
the outer decoder. It then minimises waveform SSE + spectral_weight x multi-resolution STFT
distance + beta x KL.

It prints the test figures before and after, as wave_quality.py computes them: RMS% of the mu-law
waveform; the fraction of reconstructions whose nearest decoded test input (MR-STFT) is their own
(chance 1/93); the median rank of the own note; diversity; and active latent units.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wave_quality import identity_figures, mean_off_diagonal, pairwise_mrstft  # noqa: E402

from samplegen.dsp.codec import decode_batch  # noqa: E402
from samplegen.dsp.metrics import multi_resolution_stft_distance  # noqa: E402
from samplegen.models.artifact import load_model  # noqa: E402
from samplegen.models.combined import CombinedModel  # noqa: E402
from samplegen.models.vae import VAE, kl_per_dim  # noqa: E402
from samplegen.platform.datasets import load_dataset  # noqa: E402


@torch.no_grad()
def _codes(outer: Any, x: np.ndarray) -> torch.Tensor:
    return torch.cat(
        [outer.encode(torch.from_numpy(x[i : i + 32])).flatten(1) for i in range(0, len(x), 32)]
    )


@torch.no_grad()
def figures(combined: Any, codec: Any, x: np.ndarray, codes: torch.Tensor) -> dict[str, Any]:
    """Test figures of the combined model (the VAE's posterior mean, no refinement)."""
    outer, inner = combined.outer, combined.inner
    shape = outer.latent_shape
    mu = torch.cat([inner.encode_amortized(codes[i : i + 32]) for i in range(0, len(codes), 32)])
    recon = torch.cat(
        [
            outer.decode(inner.decode(mu[i : i + 32]).reshape(-1, *shape))
            for i in range(0, len(mu), 32)
        ]
    ).numpy()
    rms = 100 * math.sqrt(float(((recon - x) ** 2).mean()))
    recon_audio = np.asarray(
        decode_batch(recon, codec, n_iter=0, seed=0, device="cpu"), dtype=np.float32
    )
    real_audio = np.asarray(
        decode_batch(x, codec, n_iter=0, seed=0, device="cpu"), dtype=np.float32
    )
    real_mean = mean_off_diagonal(pairwise_mrstft(real_audio, real_audio))
    ident = identity_figures(recon_audio, real_audio, real_mean)
    active = int((mu.var(0, unbiased=False) > 0.01).sum())
    return {"rms_percent": rms, "active": active, **ident}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--spectral-weight", type=float, default=1000.0)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)

    loaded = load_model(args.run / "models" / "combined_base")
    combined, codec = loaded.model, loaded.codec
    if not isinstance(combined, CombinedModel) or not isinstance(combined.inner, VAE):
        raise SystemExit(f"{args.run}/models/combined_base: not a combined model with a VAE inside")
    outer, inner = combined.outer, combined.inner
    for param in outer.parameters():
        param.requires_grad_(False)
    data = load_dataset(args.run / "dataset", splits=("train", "test"))
    x_train = np.asarray(data.splits["train"].x, dtype=np.float32)
    x_test = np.asarray(data.splits["test"].x, dtype=np.float32)
    c_train, c_test = _codes(outer, x_train), _codes(outer, x_test)
    shape = outer.latent_shape

    def show(label: str) -> None:
        f = figures(combined, codec, x_test, c_test)
        print(
            f"{label}: test RMS {f['rms_percent']:.2f}% | own note nearest "
            f"{f['nearest_is_own']:.3f} | median rank {f['own_rank_median']:.0f} of {f['count']} | "
            f"own MR-STFT {f['own_mrstft_mean']:.2f} | diversity {f['diversity_ratio']:.2f} | "
            f"active {f['active']}",
            flush=True,
        )

    show("chained study's VAE (code-space SSE)")
    opt = torch.optim.Adam(inner.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        inner.train()
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / args.epochs))
        sums = np.zeros(3)
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), args.batch):
            idx = np.sort(order[start : start + args.batch])
            xb = torch.from_numpy(x_train[idx])
            mu, logvar = inner.posterior(c_train[idx])
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            wave = outer.decode(inner.decode(z).reshape(-1, *shape))
            sse = (wave - xb).pow(2).sum(1).mean()
            spectral = multi_resolution_stft_distance(wave, xb).mean()
            kl = kl_per_dim(mu, logvar).sum()
            loss = sse + args.spectral_weight * spectral + args.beta * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += np.array([float(v.detach()) for v in (sse, spectral, kl)]) * len(idx)
        sse_m, spec_m, kl_m = sums / len(x_train)
        print(
            f"epoch {epoch}: train SSE {sse_m:.0f} MR-STFT {spec_m:.3f} KL {kl_m:.1f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    inner.eval()
    show(f"after {args.epochs} end-to-end epochs (spectral weight {args.spectral_weight:g})")


if __name__ == "__main__":
    main()
