"""How much of a combined STFT model's error a few more numbers per note could remove (issue 9).

    .venv/bin/python benchmarks/gain_oracle.py MODEL_DIR --data DATASET [--splits validation,test]
        [--steps 300] [--no-append]

Each note is reconstructed as `samplegen evaluate` does (codes refined end to end when the VAE
refines them). Then, note by note, a gain in dB with a handful of free parameters multiplies the
reconstruction's linear magnitude, and its parameters are fitted to the note itself (Adam on the
squared error in the mu-law domain where RMS% is defined). The gain families:
- static over the note: a level, smooth curves over log frequency (the EQ copies' cosines), or
  one gain per harmonic of the note's pitch (hat functions centred on h * f0);
- over time: a level that moves quadratically through the note, or a free level per frame;
- both: smooth curves whose weights move quadratically through the note.

It is an oracle: the parameters see the note they correct, like the refined codes do. If a
family with a few parameters removed much of the error, a decoder with that structure would be
worth building (its parameters taken from the 8 latents); if none does, what the 8 latents miss is
detail that no low-dimensional gain holds. Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from error_map import load_inputs, reconstruct  # noqa: E402
from results_file import publish  # noqa: E402

LR_DB = 0.05

GainFn = Callable[[torch.Tensor], torch.Tensor]


def harmonic_basis(note: int, harmonics: int, freqs: np.ndarray) -> np.ndarray:
    """(harmonics, bins) hat functions centred on h * f0 of MIDI `note`, each falling to 0 at its
    neighbours' centres; the first holds below f0 and the last above its centre."""
    f0 = 440.0 * 2 ** ((note - 69) / 12)
    centre = f0 * np.arange(1, harmonics + 1)
    basis = np.zeros((harmonics, len(freqs)))
    for h in range(harmonics):
        rise = (
            np.ones_like(freqs)
            if h == 0
            else np.clip((freqs - centre[h - 1]) / (centre[h] - centre[h - 1]), 0, 1)
        )
        fall = (
            np.ones_like(freqs)
            if h == harmonics - 1
            else np.clip((centre[h + 1] - freqs) / (centre[h + 1] - centre[h]), 0, 1)
        )
        basis[h] = np.minimum(rise, fall)
    return basis


def families(codec: Any, notes: Sequence[int]) -> list[tuple[str, int, tuple[int, ...], GainFn]]:
    """(name, parameters per note, parameter shape, params -> dB gain (N, bins, frames))."""
    from samplegen.dsp.equalise import eq_basis

    bins, frames = codec.shape
    freqs = np.arange(bins) * codec.sample_rate / codec.n_fft
    t = torch.linspace(0.0, 1.0, frames)
    quad = torch.stack([torch.ones_like(t), t, t * t])  # (3, frames)

    def smooth(k: int) -> torch.Tensor:
        # A level and k - 1 cosine terms over log frequency.
        return torch.cat([torch.ones(1, bins), torch.from_numpy(eq_basis(codec, k - 1)).float()])

    # Gains built in the loops below: each closes over its own basis, not the loop's last one.
    def curve(b: torch.Tensor) -> GainFn:
        return lambda c: (c @ b)[:, :, None]

    def per_harmonic(b: torch.Tensor) -> GainFn:
        return lambda c: torch.einsum("nk,nkb->nb", c, b)[:, :, None]

    out: list[tuple[str, int, tuple[int, ...], GainFn]] = [
        ("level", 1, (1,), lambda c: c[:, :, None]),
    ]
    for k in (4, 8, 16):
        out.append((f"smooth curve, {k} terms", k, (k,), curve(smooth(k))))
    for h in (8, 16):
        per_note = torch.from_numpy(np.stack([harmonic_basis(n, h, freqs) for n in notes])).float()
        out.append((f"one gain per harmonic, {h} harmonics", h, (h,), per_harmonic(per_note)))
    out.append(("level quadratic in time", 3, (3,), lambda c: (c @ quad)[:, None, :]))
    out.append(("a free level per frame", frames, (frames,), lambda c: c[:, None, :]))
    b5 = smooth(5)
    out.append(
        (
            "5-term curve, each term quadratic in time",
            15,
            (5, 3),
            lambda c: torch.einsum("nkj,kb,jf->nbf", c, b5, quad),
        )
    )
    return out


def fit_gain(
    recon: torch.Tensor,
    x: torch.Tensor,
    shape: tuple[int, ...],
    gain: GainFn,
    mu: float,
    steps: int,
) -> float:
    """RMS% after fitting each note's gain parameters (zero: no change) to the note."""
    from samplegen.dsp.codec import inverse_mu_law, mu_law

    lin = inverse_mu_law(recon.clamp(0.0, 1.0), mu)
    params = torch.zeros(len(x), *shape, requires_grad=True)
    opt = torch.optim.Adam([params], lr=LR_DB)
    best = float(((recon - x) ** 2).sum())
    for _ in range(steps):
        y = mu_law((lin * 10.0 ** (gain(params) / 20.0)).clamp(0.0, 1.0), mu)
        loss = ((y - x) ** 2).sum()
        # Adam wanders a little around its optimum: keep the best point it visited.
        best = min(best, float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(100 * np.sqrt(best / x.numel()))


def section(
    model_dir: str,
    data: str,
    rows: list[tuple[str, int]],
    figures: dict[str, list[float]],
    argv: str,
) -> str:
    """The markdown section for RESULTS.md."""
    splits = list(figures)
    lines = [
        f"## How much a few more numbers per note could remove (benchmarks/gain_oracle.py), "
        f"{dt.date.today()}",
        "",
        f"- Command: `.venv/bin/python benchmarks/gain_oracle.py {argv}`",
        f"- Machine: {platform.machine()} 2-core CPU, no GPU; torch {torch.__version__}",
        f"- Model: `{model_dir}`; dataset `{data}`. Each note's gain parameters are fitted to the "
        "note itself (an oracle); RMS% in the mu-law magnitude domain as `samplegen evaluate`.",
        "",
        "| gain per note | parameters per note | " + " | ".join(f"{s} RMS%" for s in splits) + " |",
        "|---|---:|" + "---:|" * len(splits),
    ]
    for i, (name, n) in enumerate(rows):
        lines.append(
            f"| {name} | {n} | " + " | ".join(f"{figures[s][i]:.3f}" for s in splits) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--splits", default="validation,test")
    p.add_argument("--steps", type=int, default=300, help="Adam steps per gain fit")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    model, ds, splits = load_inputs(a.model, a.data, a.splits)
    rows: list[tuple[str, int]] = [("none (the model's reconstruction)", 0)]
    figures: dict[str, list[float]] = {}
    for split in splits:
        x_np = np.asarray(ds.splits[split].x, dtype=np.float32)
        recon = torch.from_numpy(reconstruct(model, x_np)[0])
        x = torch.from_numpy(x_np)
        figures[split] = [float(100 * torch.sqrt(((recon - x) ** 2).mean()))]
        notes = [int(m["note"]) for m in ds.splits[split].meta]
        fams = families(ds.codec, notes)
        for name, _, shape, gain in fams:
            rms = fit_gain(recon, x, shape, gain, ds.codec.mu, a.steps)
            figures[split].append(rms)
            print(f"{split}: {name}: {rms:.3f}", flush=True)
        rows[1:] = [(name, n) for name, n, _, _ in fams]
    text = section(a.model, a.data, rows, figures, " ".join(sys.argv[1:] if argv is None else argv))
    publish(text, append=not a.no_append)


if __name__ == "__main__":
    main()
