"""Codec speed on real notes: STFT encode throughput (1 and 2 threads) and Griffin-Lim speed.

Usage: .venv/bin/python benchmarks/dsp.py [--notes 64] [--library DIR | --synthetic] [--no-append]

Notes come from the built-in sample library (samplegen.dsp.library.ensure_library()); --synthetic
uses decaying harmonic notes instead. A dated section is appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from results_file import publish

from samplegen.dsp.audio import load_wave
from samplegen.dsp.codec import decode_batch, encode_batch
from samplegen.dsp.config import CodecConfig
from samplegen.dsp.errors import AudioError


def library_notes(config: CodecConfig, count: int, folder: Path | None) -> tuple[np.ndarray, str]:
    """Up to `count` notes spread evenly over the library's files (sorted by name)."""
    if folder is None:
        from samplegen.dsp.library import ensure_library

        folder = ensure_library()
    files = sorted(Path(folder).glob("*.wav"))
    if not files:
        raise SystemExit(f"{folder}: no .wav files")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    waves = []
    t0 = time.perf_counter()
    for path in picks:
        try:
            waves.append(load_wave(path, config)[0])
        except AudioError as exc:
            print(f"skipped {exc}", file=sys.stderr)
    load_s = time.perf_counter() - t0
    print(f"loaded {len(waves)} notes in {load_s:.2f} s ({len(waves) / load_s:.0f} files/s)")
    return np.stack(waves), f"{len(waves)} notes from the built-in library ({folder})"


def synthetic_notes(config: CodecConfig, count: int) -> tuple[np.ndarray, str]:
    """Decaying harmonic notes at C3/C4/C5 with varied timbres (seeded)."""
    rng = np.random.default_rng(0)
    t = np.arange(config.num_samples) / config.sample_rate
    waves = []
    for i in range(count):
        f0 = (130.81, 261.63, 523.25)[i % 3]
        amps = rng.random(12) / np.arange(1, 13)
        x = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(amps))
        x = x * np.exp(-t * rng.uniform(0.5, 4.0))
        waves.append((x / np.max(np.abs(x))).astype(np.float32))
    return np.stack(waves), f"{count} synthetic harmonic notes"


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall time of `repeats` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=64, help="notes for the encode benchmark")
    parser.add_argument("--library", type=Path, default=None, help="a library folder of WAVs")
    parser.add_argument("--synthetic", action="store_true", help="synthetic notes, no library")
    parser.add_argument("--gl-batch", type=int, default=16)
    parser.add_argument("--gl-iter", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    config = CodecConfig()
    if args.synthetic:
        waves, source = synthetic_notes(config, args.notes)
    else:
        waves, source = library_notes(config, args.notes, args.library)
    n = waves.shape[0]
    audio_s = n * config.duration
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        enc_s = best_of(lambda: encode_batch(waves, config), args.repeats)
        encoded = encode_batch(waves, config)
        gl_in = encoded[: args.gl_batch]
        gl_s = best_of(
            functools.partial(decode_batch, gl_in, config, n_iter=args.gl_iter, seed=0),
            args.repeats,
        )
        gl_audio_s = gl_in.shape[0] * config.duration
        rows.append(
            (
                threads,
                n * config.num_samples / enc_s,
                n / enc_s,
                audio_s / enc_s,
                gl_audio_s / gl_s,
                gl_s,
            )
        )
        print(
            f"threads={threads}: encode {rows[-1][1] / 1e6:.2f} M samples/s ({rows[-1][2]:.0f} notes/s, "
            f"{rows[-1][3]:.0f}x real time); Griffin-Lim batch {gl_in.shape[0]} x {args.gl_iter} it: "
            f"{gl_s:.2f} s = {rows[-1][4]:.1f}x real time"
        )

    load_after = os.getloadavg()[0]
    print(f"1-minute load average: {load_before:.1f} before, {load_after:.1f} after")
    if args.no_append:
        return
    command = "python " + " ".join([os.path.relpath(__file__, Path.cwd()), *sys.argv[1:]])
    lines = [
        "",
        f"## dsp codec ({dt.date.today().isoformat()})",
        "",
        f"- Command: `{command}`",
        f"- Machine: 2-core CPU, no GPU ({platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}); 1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after (other work shares the 2 cores, so 2-thread figures are noisy)",
        f"- Data: {source}; codec: STFT {config.n_fft}/{config.hop} Hann, {config.duration:g} s at "
        f"{config.sample_rate} Hz -> {config.shape}",
        f"- Encode = encode_batch (STFT, peak-normalise, floor, mu-law) of all notes; Griffin-Lim = "
        f"decode_batch of {min(args.gl_batch, n)} notes, {args.gl_iter} fast-GL iterations "
        f"(momentum 0.99); best of {args.repeats} after a warm-up.",
        "",
        "| torch threads | encode samples/s | encode notes/s | encode x real time | "
        "Griffin-Lim x real time | Griffin-Lim batch wall s |",
        "|---|---|---|---|---|---|",
    ]
    for threads, sps, nps, rt, gl_rt, gl_s in rows:
        lines.append(
            f"| {threads} | {sps:,.0f} | {nps:.1f} | {rt:.0f} | {gl_rt:.1f} | {gl_s:.2f} |"
        )
    publish("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
