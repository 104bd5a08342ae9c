"""Figures for generation and evaluation (matplotlib's Agg canvas only, no pyplot state).

- `save_spectrogram`: one small spectrogram PNG per generated sound.
- `plot_reconstruction_pair`: original against reconstruction.
- `plot_latent_scatter`: latent pairs per category with 1-sigma ellipses and per-dimension mean/std.
- `plot_loss_histogram`: per-sample losses with the worst samples named.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.atomic import write_atomic

_DB_RANGE = 80.0  # dB shown below the peak


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    # No timestamps in the PNG, so the same sound always gives the same file.
    return write_atomic(
        path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None})
    )


def spectrogram_db(sound: np.ndarray, codec: Any, *, encoded: bool) -> np.ndarray:
    """Magnitude spectrogram in dB relative to its peak, shape (bins, frames).

    `encoded=True`: `sound` is an STFT model output (mu-law magnitude); else a waveform, which is
    transformed with the codec's STFT settings.
    """
    if encoded and codec.representation == "stft":
        from samplegen.dsp.codec import magnitude

        mag = np.asarray(magnitude(np.asarray(sound, np.float32), codec), dtype=np.float64)
    else:
        import torch

        x = torch.as_tensor(np.asarray(sound, np.float32))
        if encoded:  # a "wave" model output is mu-law audio
            from samplegen.dsp.codec import inverse_mu_law

            x = inverse_mu_law(x.clamp(-1, 1), codec.mu)
        spec = torch.stft(
            x,
            n_fft=codec.n_fft,
            hop_length=codec.hop,
            window=torch.hann_window(codec.n_fft),
            center=True,
            return_complex=True,
        )
        mag = spec.abs().double().numpy()
    peak = float(mag.max()) if mag.size else 0.0
    if peak <= 0:
        return np.full(mag.shape, -_DB_RANGE)
    return np.maximum(20 * np.log10(np.maximum(mag / peak, 1e-12)), -_DB_RANGE)


def _draw_spec(ax: Any, db: np.ndarray, codec: Any, title: str) -> Any:
    frames = db.shape[1]
    seconds = frames * codec.hop / codec.sample_rate
    im = ax.imshow(
        db,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=-_DB_RANGE,
        vmax=0,
        extent=(0, seconds, 0, codec.sample_rate / 2000),
        interpolation="nearest",
    )
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=6)
    return im


def save_spectrogram(
    path: str | os.PathLike[str], db: np.ndarray, codec: Any, title: str = ""
) -> Path:
    """Write one spectrogram (dB below peak) as a small PNG."""
    fig = _figure(3.2, 2.2)
    ax = fig.add_subplot(1, 1, 1)
    _draw_spec(ax, db, codec, title)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


def plot_reconstruction_pair(
    path: str | os.PathLike[str],
    original_db: np.ndarray,
    recon_db: np.ndarray,
    codec: Any,
    title: str = "",
) -> Path:
    """Original and reconstruction spectrograms side by side, with their dB difference."""
    fig = _figure(9.0, 2.6)
    axes = fig.subplots(1, 3)
    _draw_spec(axes[0], original_db, codec, f"original {title}".strip())
    _draw_spec(axes[1], recon_db, codec, "reconstruction")
    diff = recon_db - original_db
    seconds = diff.shape[1] * codec.hop / codec.sample_rate
    im = axes[2].imshow(
        diff,
        origin="lower",
        aspect="auto",
        cmap="coolwarm",
        vmin=-30,
        vmax=30,
        extent=(0, seconds, 0, codec.sample_rate / 2000),
        interpolation="nearest",
    )
    axes[2].set_title("reconstruction - original (dB)", fontsize=8)
    axes[2].set_xlabel("s", fontsize=7)
    axes[2].tick_params(labelsize=6)
    fig.colorbar(im, ax=axes[2])
    fig.tight_layout(pad=0.4)
    return _save(fig, path)


def _ellipse_points(mean: np.ndarray, cov: np.ndarray, n: int = 64) -> np.ndarray:
    """Points of the 1-sigma ellipse of a 2-D Gaussian."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0.0)
    t = np.linspace(0, 2 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)])
    return (vecs @ (np.sqrt(vals)[:, None] * circle)).T + mean


def plot_latent_scatter(
    path: str | os.PathLike[str],
    latents: np.ndarray,
    categories: Sequence[str],
    *,
    max_dims: int = 6,
    title: str = "",
) -> Path:
    """Scatter plots of consecutive latent dimension pairs coloured by category, with each
    category's 1-sigma ellipse, plus a panel of per-dimension mean and std (as in the original).

    Only the `max_dims` dimensions with the largest variance are shown when there are more.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != len(categories):
        raise ValueError(f"latents {z.shape} and {len(categories)} categories do not match")
    dims = list(range(z.shape[1]))
    if len(dims) > max_dims:
        dims = sorted(np.argsort(-z.var(axis=0), kind="stable")[:max_dims].tolist())
    pairs = [(dims[i], dims[i + 1]) for i in range(0, len(dims) - 1, 2)] or [(dims[0], dims[0])]
    cats = sorted(set(categories))
    cmap = __import__("matplotlib").colormaps["tab20"]
    colours = {c: cmap(i % 20) for i, c in enumerate(cats)}
    labels = np.asarray(categories)
    ncols = len(pairs) + 1
    fig = _figure(3.6 * ncols, 3.6)
    axes = np.atleast_1d(fig.subplots(1, ncols))
    for ax, (i, j) in zip(axes[:-1], pairs, strict=False):
        for c in cats:
            pts = z[labels == c][:, [i, j]]
            ax.scatter(pts[:, 0], pts[:, 1], s=8, color=colours[c], label=c, alpha=0.7)
            if pts.shape[0] >= 3:
                e = _ellipse_points(pts.mean(axis=0), np.cov(pts.T))
                ax.plot(e[:, 0], e[:, 1], color=colours[c], lw=1)
        ax.set_xlabel(f"z{i}", fontsize=8)
        ax.set_ylabel(f"z{j}", fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0].legend(fontsize=6, markerscale=1.5, loc="best")
    ax = axes[-1]
    mean, std = z.mean(axis=0), z.std(axis=0)
    ax.errorbar(np.arange(z.shape[1]), mean, yerr=std, fmt="o", ms=3, capsize=2)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("per-dimension mean +- std", fontsize=8)
    ax.set_xlabel("dimension", fontsize=8)
    ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.5)
    return _save(fig, path)


def plot_loss_histogram(
    path: str | os.PathLike[str],
    losses: Sequence[float],
    names: Sequence[str],
    *,
    worst: int = 5,
    title: str = "per-sample loss",
) -> Path:
    """Histogram of per-sample losses, the `worst` samples marked and named."""
    x = np.asarray(losses, dtype=np.float64)
    if x.shape[0] != len(names):
        raise ValueError(f"{x.shape[0]} losses but {len(names)} names")
    fig = _figure(7.0, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(x, bins=min(40, max(5, x.shape[0] // 3)), color="#4a7ab5")
    order = np.argsort(-x, kind="stable")[:worst]
    top = ax.get_ylim()[1]
    for rank, k in enumerate(order):
        ax.axvline(x[k], color="#c0392b", lw=0.8)
        ax.text(
            x[k],
            top * (0.95 - 0.09 * rank),
            f" {names[k]} ({x[k]:.3g})",
            fontsize=6,
            color="#c0392b",
            ha="right",
        )
    ax.set_xlabel("loss (sum of squared errors, encoded domain)", fontsize=8)
    ax.set_ylabel("samples", fontsize=8)
    ax.set_title(f"{title}: mean {x.mean():.3g}, median {np.median(x):.3g}", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout(pad=0.5)
    return _save(fig, path)
