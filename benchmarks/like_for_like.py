"""A run's combined model read like for like with the original project and with a linear model
(issue 9): three readings that `samplegen evaluate` does not give.

    .venv/bin/python benchmarks/like_for_like.py RUN [--splits test,train] [--frames 83]
        [--batch-size 32] [--no-append]

- **The original's note length.** Its notes were 1.95 s, 1025 x 83 values; samplegen's are 2 s,
  1025 x 87, and the 4 extra frames are the note's faded tail, where the error is small. RMS% is
  defined per value, so a longer tail lowers it: here it is also given over the first 83 frames,
  for the combined model and for the outer model alone.
- **The PCA reference with the model's code refinement.** `evaluate` projects each note's outer
  encoding onto k principal components; the combined model refines its codes by gradient steps
  through its decoders against the note itself. Here the PCA's k coefficients get the same steps,
  rate and prior weight, in whitened coordinates (unit variance over the fit's notes, as a VAE's
  codes are), through the same frozen outer decoder.
- **The PCA fitted on every training row.** `evaluate` fits it on the train split's real notes;
  the model also trained on its augmented rows (the variation presets' notes, any mixes).

RUN is a `samplegen run` folder (models/combined and dataset). Appends a dated section to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import publish  # noqa: E402

from samplegen.dsp.metrics import rms_percent  # noqa: E402
from samplegen.models.artifact import load_model  # noqa: E402
from samplegen.models.refine import Refinement, refine_codes  # noqa: E402
from samplegen.platform.datasets import load_dataset  # noqa: E402
from samplegen.platform.evaluation.inference import run_model  # noqa: E402
from samplegen.platform.evaluation.run import _real_rows  # noqa: E402
from samplegen.platform.pca import fit_pca  # noqa: E402


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def encode_all(model: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """The frozen outer encoder's output, flattened, (N, D) float64."""
    with torch.no_grad():
        parts = [
            model.outer.encode(torch.from_numpy(x[s])).flatten(1) for s in _batches(len(x), batch)
        ]
    return torch.cat(parts).double().numpy()


def rms_over(err: np.ndarray, frames: int | None) -> float:
    """RMS% of squared errors (N, bins, frames), pooled over notes, over the first `frames`."""
    part = err if frames is None else err[..., :frames]
    return float(rms_percent(part.reshape(len(part), -1).sum(1).mean(), part[0].size))


def pca_figures(
    model: Any, fit_h: np.ndarray, h: np.ndarray, x: np.ndarray, k: int, batch: int
) -> tuple[float, float]:
    """(projected, refined) RMS% of a k-component PCA fitted on `fit_h`, on encodings `h` of `x`."""
    fit = fit_pca(fit_h, k)
    mean = torch.from_numpy(fit.mean).float()
    basis = torch.from_numpy(fit.components).float()  # (k, D)
    scale = torch.from_numpy(fit.singular_values / np.sqrt(len(fit_h) - 1)).float().clamp_min(1e-8)
    shape = tuple(model.outer.latent_shape)

    def decode(w: torch.Tensor) -> torch.Tensor:
        return model.outer.decode((mean + (w * scale) @ basis).view(-1, *shape))

    refinement = model.inner.refinement()
    projected, refined = [], []
    for s in _batches(len(x), batch):
        target = torch.from_numpy(x[s])
        w0 = ((torch.from_numpy(h[s]).float() - mean) @ basis.T) / scale
        with torch.no_grad():
            projected.append(((decode(w0) - target) ** 2).flatten(1).sum(1).double().numpy())
        w = w0
        if refinement is not None and refinement.steps:
            w = refine_codes(
                decode, w0, target, Refinement(refinement.steps, refinement.lr, refinement.prior)
            )
        with torch.no_grad():
            refined.append(((decode(w) - target) ** 2).flatten(1).sum(1).double().numpy())
    values = x[0].size
    return (
        float(rms_percent(np.concatenate(projected).mean(), values)),
        float(rms_percent(np.concatenate(refined).mean(), values)),
    )


def measure(run: Path, splits: list[str], frames: int, batch: int) -> dict[str, dict[str, Any]]:
    """Every figure of the section, by split."""
    model: Any = load_model(run / "models" / "combined").model.eval()
    data = load_dataset(run / "dataset", splits=tuple(sorted({"train", *splits})))
    k = int(np.prod(model.inner.latent_shape))
    train = data.splits["train"]
    all_h = encode_all(model, np.asarray(train.x, dtype=np.float32), batch)
    real = np.array([not m.get("augmented") for m in train.meta], dtype=bool)  # as _real_rows
    fits = {"real": all_h[real], "all": all_h}
    out: dict[str, dict[str, Any]] = {}
    for split in splits:
        start = time.perf_counter()
        x, _, _ = _real_rows(data, split)
        result = run_model(model, x, batch_size=batch, device="cpu")
        assert result.recon is not None and result.outer_latent is not None
        err = (result.recon.astype(np.float64) - x) ** 2
        with torch.no_grad():
            outer = np.concatenate(
                [
                    model.outer.decode(model.outer.encode(torch.from_numpy(x[s]))).numpy()
                    for s in _batches(len(x), batch)
                ]
            )
        outer_err = (outer.astype(np.float64) - x) ** 2
        h = result.outer_latent.astype(np.float64)
        row: dict[str, Any] = {
            "notes": len(x),
            "frames": x.shape[-1],
            "model": (rms_over(err, None), rms_over(err, frames)),
            "outer": (rms_over(outer_err, None), rms_over(outer_err, frames)),
            # mean per-note SSE: the model's, and the part of it the VAE adds to the outer model's
            "loss": (
                float(err.reshape(len(x), -1).sum(1).mean()),
                float(
                    err.reshape(len(x), -1).sum(1).mean()
                    - outer_err.reshape(len(x), -1).sum(1).mean()
                ),
            ),
        }
        for name, fit_h in fits.items():
            row[f"pca_{name}"] = pca_figures(model, fit_h, h, x, k, batch)
        row["seconds"] = time.perf_counter() - start
        out[split] = row
    out["_fit"] = {"real": int(real.sum()), "all": len(all_h), "k": k}
    return out


def section(run: Path, figures: dict[str, dict[str, Any]], frames: int, argv: list[str]) -> str:
    """The RESULTS.md section."""
    fit = figures.pop("_fit")
    splits = list(figures)
    first = figures[splits[0]]
    lines = [
        f"## Like for like: the original's note length, and a PCA reference refined as the model "
        f"is, {dt.date.today().isoformat()}",
        "",
        f"`.venv/bin/python benchmarks/like_for_like.py {' '.join(argv)}` on "
        f"{_machine()}, model "
        f"`{run / 'models' / 'combined'}`. RMS% as `evaluate` computes it (per value, pooled over "
        f"the split's real notes), over all {first['frames']} frames and over the first {frames} "
        f"(the original's 1.95 s notes). PCA: k = {fit['k']} components of the outer encodings, "
        f"fitted on the train split's {fit['real']} real notes (as `evaluate`) or on all its "
        f"{fit['all']} rows (the variation presets' notes too, as the model trained); projected "
        "(as `evaluate`), or its coefficients refined with the model's own refinement (steps, "
        "rate, prior) in whitened coordinates through the frozen outer decoder.",
        "",
        "| RMS% | " + " | ".join(f"{s} ({figures[s]['notes']} notes)" for s in splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]

    def cells(key: str, i: int) -> str:
        return " | ".join(f"{figures[s][key][i]:.3f}" for s in splits)

    lines += [
        f"| combined model, all frames (evaluate's figure) | {cells('model', 0)} |",
        f"| combined model, first {frames} frames | {cells('model', 1)} |",
        f"| outer model alone, all frames | {cells('outer', 0)} |",
        f"| outer model alone, first {frames} frames | {cells('outer', 1)} |",
        f"| PCA on real train notes, projected (evaluate's reference) | {cells('pca_real', 0)} |",
        f"| PCA on real train notes, refined | {cells('pca_real', 1)} |",
        f"| PCA on all train rows, projected | {cells('pca_all', 0)} |",
        f"| PCA on all train rows, refined | {cells('pca_all', 1)} |",
        "| seconds | " + " | ".join(f"{figures[s]['seconds']:.0f}" for s in splits) + " |",
        "",
    ]
    if "train" in figures and len(splits) > 1:
        train = figures["train"]["loss"]
        for s in (s for s in splits if s != "train"):
            loss = figures[s]["loss"]
            lines += [
                f"{s} / train loss: {loss[0] / train[0]:.2f} for the combined model (the issue's "
                f"ratio), {loss[1] / train[1]:.2f} for the loss the VAE adds to the outer model "
                f"alone ({loss[1]:.2f} against {train[1]:.2f} per note): train holds the noise-like "
                "sound effects the outer model fits worst, which lowers the first ratio.",
                "",
            ]
    return "\n".join(lines)


def _machine() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.machine()
    return f"{os.cpu_count()} cores, {name}"


def main(argv: list[str] | None = None) -> int:
    """Measure and publish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a samplegen run folder")
    parser.add_argument("--splits", default="test", help="comma-separated splits (default test)")
    parser.add_argument("--frames", type=int, default=83, help="the original's frames (83)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-append", action="store_true", help="print only")
    args = parser.parse_args(argv)
    raw = list(sys.argv[1:] if argv is None else argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    torch.set_num_threads(2)
    figures = measure(args.run, splits, args.frames, args.batch_size)
    publish(section(args.run, figures, args.frames, raw), append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
