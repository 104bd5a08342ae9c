"""Where a combined STFT model's remaining error sits (issue 9): frequency, time, notes, programs.

    .venv/bin/python benchmarks/error_map.py MODEL_DIR --data DATASET [--splits validation,test]
        [--no-append]

MODEL_DIR is a combined model (outer + inner). Each split is reconstructed as `samplegen evaluate`
does (the combined model's own codes, refined end to end when its VAE refines them), and by the
outer auto-encoder alone. The squared error, in the mu-law magnitude domain where RMS% is
defined, is then split:
- by frequency band and by time after the onset (share of the split's summed squared error, and
  the band's own RMS%, for the combined model and for the outer model alone);
- into its static part (each bin's error averaged over the note: a wrong spectral envelope held
  for the whole note) and the rest;
- into the outer model's error, the combined model's distance from the outer reconstruction, and
  the cross term between them (near 0 when the two add up);
- over notes (share of the worst 10% and 25%) and programs (the five worst).
Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from results_file import publish

BANDS_HZ = (0, 700, 1400, 2800, 5500, 11000, 22050)
SEGMENTS_S = (0.0, 0.12, 0.46, 2.1)


def reconstruct(model: Any, x: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(combined, outer-only) reconstructions of `x`, as `samplegen evaluate` makes them."""
    from samplegen.platform.evaluation.inference import run_model

    combined = run_model(model, x, batch_size=batch, device="cpu").recon
    outer = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outer.append(model.outer(torch.from_numpy(x[i : i + batch])).recon.numpy())
    return np.asarray(combined), np.concatenate(outer)


def _shares(err: np.ndarray, edges: Sequence[int], axis: int) -> tuple[list[float], list[float]]:
    """Per slice of `axis` between `edges`: share of the summed error and the slice's RMS%."""
    other = tuple(a for a in range(err.ndim) if a != axis)
    per = err.sum(axis=other)
    count = err.size / err.shape[axis]
    total = per.sum()
    shares, rms = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        shares.append(float(per[lo:hi].sum() / total))
        rms.append(float(100 * np.sqrt(per[lo:hi].sum() / (count * max(hi - lo, 1)))))
    return shares, rms


def error_map(
    x: np.ndarray, combined: np.ndarray, outer: np.ndarray, meta: list[dict[str, Any]], codec: Any
) -> dict[str, Any]:
    """The figures of one split (x, reconstructions: N x bins x frames)."""
    bins = [min(int(round(f * codec.n_fft / codec.sample_rate)), x.shape[1]) for f in BANDS_HZ]
    bins[-1] = x.shape[1]
    frames = [min(int(round(s * codec.sample_rate / codec.hop)), x.shape[2]) for s in SEGMENTS_S]
    frames[-1] = x.shape[2]
    d = combined - x
    err, err_outer = d**2, (outer - x) ** 2
    per_note = err.mean(axis=(1, 2))
    order = np.sort(per_note)[::-1]
    n = len(order)
    programs: dict[str, float] = {}
    for m, e in zip(meta, per_note, strict=True):
        # "p059_muted_trumpet_C4_v100" -> "p059_muted_trumpet": the program, all its notes
        program = re.sub(r"_[A-G]#?-?\d+_v\d+$", "", m["name"])
        programs[program] = programs.get(program, 0.0) + float(e)
    worst = sorted(programs.items(), key=lambda kv: -kv[1])[:5]
    band_share, band_rms = _shares(err, bins, 1)
    _, band_rms_outer = _shares(err_outer, bins, 1)
    seg_share, seg_rms = _shares(err, frames, 2)
    _, seg_rms_outer = _shares(err_outer, frames, 2)
    return {
        "notes": n,
        "rms": float(100 * np.sqrt(err.mean())),
        "rms_outer": float(100 * np.sqrt(err_outer.mean())),
        "bands": [f"{lo}-{hi} Hz" for lo, hi in zip(BANDS_HZ[:-1], BANDS_HZ[1:], strict=True)],
        "band_share": band_share,
        "band_rms": band_rms,
        "band_rms_outer": band_rms_outer,
        "segments": [
            f"{lo:g}-{hi:g} s" for lo, hi in zip(SEGMENTS_S[:-1], SEGMENTS_S[1:], strict=True)
        ],
        "segment_share": seg_share,
        "segment_rms": seg_rms,
        "segment_rms_outer": seg_rms_outer,
        "static_share": float((d.mean(axis=2) ** 2).sum() * x.shape[2] / err.sum()),
        # chain error = outer error + (chain - outer)^2 + this cross term, as a share of the total
        "cross_share": float(2 * ((combined - outer) * (outer - x)).sum() / err.sum()),
        "top10_share": float(order[: max(n // 10, 1)].sum() / order.sum()),
        "top25_share": float(order[: max(n // 4, 1)].sum() / order.sum()),
        "worst_programs": [(name, e / per_note.sum()) for name, e in worst],
    }


def section(model_dir: str, data: str, figures: dict[str, dict[str, Any]], argv: str) -> str:
    """The markdown section for RESULTS.md."""
    lines = [
        f"## Where the combined model's error sits (benchmarks/error_map.py), {dt.date.today()}",
        "",
        f"- Command: `.venv/bin/python benchmarks/error_map.py {argv}`",
        f"- Machine: {platform.machine()} 2-core CPU, no GPU; torch {torch.__version__}",
        f"- Model: `{model_dir}`; dataset `{data}`. Squared error in the mu-law magnitude domain "
        '(RMS% as `samplegen evaluate`); "outer" is the outer auto-encoder alone.',
        "",
    ]
    for split, f in figures.items():
        lines += [
            f"{split} ({f['notes']} notes): RMS {f['rms']:.3f}% (outer alone {f['rms_outer']:.3f}%)."
            f" Static part (each bin's error averaged over the note): "
            f"{100 * f['static_share']:.0f}% of the squared error. Cross term 2(chain - outer)"
            f"(outer - input): {100 * f['cross_share']:.1f}%. Worst 10% of notes: "
            f"{100 * f['top10_share']:.0f}%; worst 25%: {100 * f['top25_share']:.0f}%. Worst "
            "programs: "
            + ", ".join(f"{name} {100 * s:.0f}%" for name, s in f["worst_programs"])
            + ".",
            "",
            "| band | share of error | RMS% | outer alone, RMS% |",
            "|---|---:|---:|---:|",
        ]
        for b, s, r, ro in zip(
            f["bands"], f["band_share"], f["band_rms"], f["band_rms_outer"], strict=True
        ):
            lines.append(f"| {b} | {100 * s:.0f}% | {r:.2f} | {ro:.2f} |")
        lines += ["", "| time after the onset | share of error | RMS% | outer alone, RMS% |"]
        lines.append("|---|---:|---:|---:|")
        for g, s, r, ro in zip(
            f["segments"], f["segment_share"], f["segment_rms"], f["segment_rms_outer"], strict=True
        ):
            lines.append(f"| {g} | {100 * s:.0f}% | {r:.2f} | {ro:.2f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def load_inputs(model_path: str, data: str, splits: str) -> tuple[Any, Any, list[str]]:
    """(combined model in eval mode, STFT dataset, split names) checked, with exits that name
    the argument at fault."""
    from samplegen.models.artifact import load_model
    from samplegen.platform.datasets import load_dataset

    model = load_model(model_path).model.eval()
    if not hasattr(model, "outer"):
        raise SystemExit(f"{model_path}: not a combined model (outer + inner)")
    ds = load_dataset(data)
    if ds.codec.representation != "stft":
        raise SystemExit(f"--data {data}: an STFT dataset is needed")
    names = splits.split(",")
    unknown = [s for s in names if s not in ds.splits]
    if unknown:
        raise SystemExit(f"--splits: {', '.join(unknown)} not in {data} ({', '.join(ds.splits)})")
    return model, ds, names


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--splits", default="validation,test")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    model, ds, splits = load_inputs(a.model, a.data, a.splits)
    figures = {}
    for split in splits:
        x = np.asarray(ds.splits[split].x, dtype=np.float32)
        combined, outer = reconstruct(model, x)
        figures[split] = error_map(x, combined, outer, ds.splits[split].meta, ds.codec)
    text = section(a.model, a.data, figures, " ".join(sys.argv[1:] if argv is None else argv))
    publish(text, append=not a.no_append)


if __name__ == "__main__":
    main()
