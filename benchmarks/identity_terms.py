"""Which term of the MR-STFT distance decides "keeps its instrument" (issue 9, waveform path).

    .venv/bin/python benchmarks/identity_terms.py --real WAVE_DATASET \
        --model LABEL=MODEL_DIR@DATASET [--model ...] [--gl 32] [--no-append]

`benchmarks/wave_quality.py` calls a reconstruction "of its instrument" when the nearest rendered
test note by the multi-resolution STFT distance (samplegen.dsp.metrics) is of the same GM program.
That distance adds two terms: spectral convergence of linear magnitudes, where the loud partials
count, and the mean absolute log-magnitude difference (floor 1e-7, about -140 dB), where every
time-frequency bin counts alike, near-silent ones included. This benchmark gives the figure by
each term alone and by both, and by a log-spectral distance whose floor is 80 dB below each
note's peak (benchmarks/generate.py's), for each model, against the test notes of the wave dataset --real
(decoded: the rendered waveforms). It also gives hubness: the largest share of reconstructions
whose nearest note is one single real note (a note that is everyone's nearest says the distance
is ruled by something all reconstructions share, not by their instrument).

Each --model is reconstructed on the test split of its own DATASET (a wave or an STFT dataset of
the same notes; STFT outputs through Griffin-Lim, --gl iterations), as wave_quality does.
Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wave_quality as wq  # noqa: E402  (the benchmark next to this one)
from results_file import publish  # noqa: E402

TERMS = (
    "both (the MR-STFT distance)",
    "spectral convergence alone",
    "log magnitude alone",
    "log-spectral distance, floor -80 dB",
)


def term_figures(d: np.ndarray, instruments: Sequence[str]) -> dict[str, float]:
    """Nearest-real-note figures of a distance matrix (reconstructions x real notes, same order)."""
    inst = np.asarray(instruments)
    nearest = d.argmin(axis=1)
    hits = np.bincount(nearest, minlength=d.shape[1])
    return {
        "same_instrument": float((inst[nearest] == inst).mean()),
        "own_note": float((nearest == np.arange(len(nearest))).mean()),
        "hub_share": float(hits.max() / len(nearest)),
    }


def measure(real: wq.RenderedNotes, model: str, data: Path, gl: int) -> dict[str, Any]:
    """Figures by term for one model's test reconstructions against the rendered notes."""
    recon, _ = wq.recon_in_order(model, data, gl, real)
    sc, log_l1 = wq.pairwise_mrstft_terms(recon, real.audio)
    wq._check_pairwise(recon, real.audio, sc + log_l1)
    lsd = wq.floored_lsd(recon, real.audio)
    return {
        name: term_figures(d, real.instruments)
        for name, d in zip(TERMS, (sc + log_l1, sc, log_l1, lsd), strict=True)
    }


def _parse_model(spec: str) -> tuple[str, str, Path]:
    label, sep, rest = spec.partition("=")
    model, sep2, data = rest.rpartition("@")
    if not (sep and sep2 and label and model and data):
        raise SystemExit(f"--model {spec!r}: expected LABEL=MODEL_DIR@DATASET")
    return label, model, Path(data)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, required=True, help="wave dataset whose test notes count")
    p.add_argument("--model", action="append", required=True, help="LABEL=MODEL_DIR@DATASET")
    p.add_argument("--gl", type=int, default=32, help="Griffin-Lim iterations for STFT models")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    models = [_parse_model(m) for m in args.model]
    import torch

    torch.set_num_threads(2)
    real = wq.RenderedNotes.of(args.real)
    inst = np.asarray(real.instruments)
    chance = float(np.mean([(inst == inst[i]).sum() / len(inst) for i in range(len(inst))]))
    rows = []
    for label, model, data in models:
        print(f"{label}: {model} on {data}", flush=True)
        figures = measure(real, model, data, args.gl)
        for term in TERMS:
            f = figures[term]
            rows.append(
                f"| {label} | {term} | {f['same_instrument']:.3f} | {f['own_note']:.3f} | "
                f"{f['hub_share']:.3f} |"
            )
    command = " ".join(["benchmarks/identity_terms.py", *(argv or sys.argv[1:])])
    lines = [
        f"## Keeps its instrument, term by term (benchmarks/identity_terms.py), "
        f"{dt.date.today().isoformat()}",
        "",
        f"- Command: `.venv/bin/python {command}`",
        f"- Machine: {platform.machine()} 2-core CPU, no GPU; torch {torch.__version__}",
        f"- Real notes: the test split of {args.real} as rendered ({len(inst)} notes); by chance "
        f"a nearest note is of the same instrument {chance:.3f} of the time, and is the note "
        f"itself {1 / len(inst):.3f}",
        "- Columns: the fraction of reconstructions whose nearest real note is of their instrument "
        "/ is their own note; hub share: the largest fraction whose nearest note is one single "
        "real note",
        "",
        "| model | distance | keeps its instrument | keeps its note | hub share |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
