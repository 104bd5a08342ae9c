"""Quality and speed of generation on a trained model; appends a section to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/generate.py [MODEL_DIR] [--count 64] [--no-append]

Without MODEL_DIR a small combined model (frame_ae outer + VAE inner, chained: the outer trained
first, the VAE on its frozen codes) is trained here on the built-in FluidR3 library, within a time
budget, and saved to --model-out. Measures:
- interpolation midpoints, raw model output: loudness (energy of the linear STFT magnitude the model
  puts out, dB) of the latent midpoint of two real notes against the quieter of the two end-points;
- interpolation midpoints as `samplegen generate interpolate` writes them: the same pairs through
  the package's own path (`plan_interpolate` with 3 steps on the notes with their original peaks,
  `decode_waves` for peak-normalised Griffin-Lim audio, `write_wav` with each sound's gain, read
  back), the midpoint's RMS level (dBFS) against the quieter end-point's;
- diversity: mean pairwise log-spectral distance (dB; per frame the RMS over bins of the dB
  difference, each spectrogram floored 80 dB below its own peak, averaged over frames) among `count`
  random sounds (T = 1), divided by the same among `count` real notes (reconstructions given for
  reference). Random sounds come from each distribution the model offers: its prior, and the
  Gaussian of its training codes when it stores one (`samplegen fit-codes`);
- novelty: log-spectral distance from each random sound to its nearest library note, against the
  nearest-other-note distance of real notes;
- level and brightness of random sounds against real notes: median energy (dB) and median spectral
  centroid (Hz) of the linear STFT magnitudes;
- speed: latent -> model output, and latent -> audio with Griffin-Lim, in times real time.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_file import publish

from samplegen.dsp.audio import load_wave
from samplegen.dsp.codec import decode_batch, encode_batch, magnitude
from samplegen.generate.latent import LatentSpace, load_space


def load_library(
    codec, limit: int, seed: int
) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Velocity-100 notes of the built-in library (no drums), encoded with `codec`: encoded notes,
    file names, categories, and each note's original peak as `load_wave` gives it (what
    `samplegen generate` records for an input file)."""
    from samplegen.dsp.library import ensure_library

    lib = ensure_library()
    with (lib / "metadata.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["velocity"] == "100" and r["category"] != "Drums"]
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in sorted(rng.permutation(len(rows))[:limit])]
    loaded = [load_wave(lib / r["file"], codec) for r in rows]
    waves = np.stack([w for w, _ in loaded])
    peaks = np.array([p for _, p in loaded], dtype=np.float64)
    x = np.asarray(encode_batch(waves, codec), dtype=np.float32)
    return x, [r["file"] for r in rows], [r["category"] for r in rows], peaks


def _fit(model, x: np.ndarray, seconds: float, lr: float, seed: int, label: str) -> float:
    """Adam on mini-batches of 16 until the time budget is spent; keeps the best epoch's weights
    (training-set loss) and returns that loss."""
    torch.set_flush_denormal(True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    start, epoch, loss = time.perf_counter(), 0, float("nan")
    best, best_state = float("inf"), None
    model.train()
    while time.perf_counter() - start < seconds:
        losses = []
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 16)):
            xb = torch.from_numpy(x[idx])
            out = model(xb)
            res = model.loss(xb, out, epoch=epoch)
            opt.zero_grad()
            res.total.backward()
            opt.step()
            losses.append(float(res.recon.detach()))
        loss = float(np.mean(losses))
        epoch += 1
        if loss < best:  # keep the best epoch: a late unstable step must not spoil the model
            best = loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(
            f"  {label} epoch {epoch}: loss {loss:.2f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return best


def train_small_model(x: np.ndarray, codec, out: Path, budget_s: float, seed: int) -> str:
    """frame_ae outer, then a VAE on its frozen codes, chained and saved; returns a description."""
    from samplegen.models.artifact import save_model
    from samplegen.models.base import InnerModel
    from samplegen.models.combined import CombinedModel
    from samplegen.models.registry import build_model

    torch.manual_seed(seed)
    outer = build_model("frame_ae", {"frame_latent": 8, "hidden": 128}, codec.shape)
    outer_loss = _fit(outer, x, budget_s * 0.75, 1e-3, seed, "outer frame_ae")
    with torch.no_grad():
        codes = np.concatenate(
            [
                outer.encode(torch.from_numpy(x[i : i + 32])).flatten(1).numpy()
                for i in range(0, len(x), 32)
            ]
        )
    inner = build_model(
        "vae", {"latent": 8, "depth": 2, "beta": 0.2, "warmup": "linear"}, (codes.shape[1],)
    )
    assert isinstance(inner, InnerModel)
    inner_loss = _fit(inner, codes.astype(np.float32), budget_s * 0.25, 1e-3, seed, "inner vae")
    model = CombinedModel.from_parts(outer, inner)
    with torch.no_grad():
        rec = np.concatenate(
            [
                model.reconstruct(torch.from_numpy(x[i : i + 32])).numpy()
                for i in range(0, len(x), 32)
            ]
        )
    loss = float(((rec - x) ** 2).reshape(len(x), -1).sum(axis=1).mean())
    save_model(
        out,
        model,
        codec=codec,
        metrics={"loss": loss, "outer_loss": outer_loss, "inner_loss": inner_loss},
    )
    return (
        f"trained here on {len(x)} library notes in {budget_s:.0f} s: frame_ae (8 values per frame, hidden 128) then VAE "
        f"(8 latents, beta 0.2) on its codes; combined loss {loss:.1f} (outer alone {outer_loss:.1f})"
    )


def level_dbfs(wave: np.ndarray) -> tuple[float, float]:
    """RMS level and peak level of audio in dBFS (a full-scale sine has RMS -3.0 dBFS)."""
    w = np.asarray(wave, dtype=np.float64)
    rms = float(np.sqrt(np.mean(w * w)))
    peak = float(np.max(np.abs(w)))
    return 20 * np.log10(max(rms, 1e-10)), 20 * np.log10(max(peak, 1e-10))


def rendered_interpolations(
    space: LatentSpace,
    x: np.ndarray,
    names: list[str],
    cats: list[str],
    peaks: np.ndarray,
    pairs: list[tuple[int, int]],
    griffin_lim_iters: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Levels of what `samplegen generate interpolate --steps 3` writes for each pair.

    Per pair, as the command does it: `plan_interpolate` on the two notes (their original peaks,
    so each sound's gain is the peaks mixed in dB), `decode_waves` on the plan's latents in one
    batch (Griffin-Lim, peak-normalised, CLI default seed 0), `write_wav` with the plan's gain
    (PCM_16, soft limiter above full scale), then the file read back. Returns (pairs, 3) RMS dBFS
    and (pairs, 3) peak dBFS for t = 0, 0.5, 1.
    """
    import tempfile

    import soundfile as sf

    from samplegen.dsp.audio import write_wav
    from samplegen.generate.io import safe_stem
    from samplegen.generate.render import DEFAULT_GAIN, RenderSettings, decode_waves
    from samplegen.generate.sounds import SoundInput, plan_interpolate

    settings = RenderSettings(griffin_lim_iters=griffin_lim_iters, spectrograms=False)
    rms = np.zeros((len(pairs), 3))
    pk = np.zeros((len(pairs), 3))
    with tempfile.TemporaryDirectory(prefix="samplegen-bench-interp-") as tmp:
        for n, (i, j) in enumerate(pairs):
            a, b = (
                SoundInput(safe_stem(names[k]), x[k], float(peaks[k]), names[k], None, cats[k])
                for k in (i, j)
            )
            plan = plan_interpolate(space, a, b, steps=3)
            z = np.stack([s.latent for s in plan.sounds]).astype(np.float32)
            _, waves = decode_waves(space, z, settings)
            for k, sound in enumerate(plan.sounds):
                gain = DEFAULT_GAIN if sound.gain is None else float(sound.gain)
                path = write_wav(
                    Path(tmp) / f"{sound.name}.wav",
                    waves[k],
                    space.codec.sample_rate,
                    settings.subtype,
                    gain=gain,
                )
                data, _ = sf.read(path, dtype="float64")
                rms[n, k], pk[n, k] = level_dbfs(data)
    return rms, pk


def mags(space: LatentSpace, encoded: np.ndarray) -> np.ndarray:
    """Linear magnitude spectrograms (N, bins, frames) of model outputs / encoded notes."""
    if space.codec.representation == "stft":
        return np.asarray(magnitude(encoded, space.codec), dtype=np.float32)
    waves = np.asarray(decode_batch(encoded, space.codec, normalize=False))
    spec = torch.stft(
        torch.from_numpy(waves),
        space.codec.n_fft,
        space.codec.hop,
        window=torch.hann_window(space.codec.n_fft),
        return_complex=True,
    )
    return spec.abs().numpy()


def energy_db(m: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum((m.astype(np.float64) ** 2).mean(axis=(1, 2)), 1e-20))


def log_spec(m: np.ndarray, floor_db: float = -80.0) -> torch.Tensor:
    """dB spectrograms (N, frames, bins), each floored at `floor_db` below its own peak."""
    t = torch.from_numpy(np.asarray(m, dtype=np.float32))
    peak = t.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    db = 20 * torch.log10(torch.maximum(t / peak, torch.tensor(10 ** (floor_db / 20))))
    return db.transpose(1, 2).contiguous()


def pairwise_lsd(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Log-spectral distance matrix (dB): per frame the RMS over bins of the dB difference, averaged
    over frames; symmetric. Computed per frame as a Gram matrix, so 64 x 256 pairs take a second."""
    la = log_spec(a)
    lb = la if b is None else log_spec(b)
    d = torch.zeros((la.shape[0], lb.shape[0]), dtype=torch.float64)
    for t in range(la.shape[1]):
        x, y = la[:, t].double(), lb[:, t].double()
        sq = (x * x).mean(1)[:, None] + (y * y).mean(1)[None, :] - 2 * (x @ y.T) / x.shape[1]
        d += sq.clamp_min(0).sqrt()
    return (d / la.shape[1]).numpy()


def centroid_hz(m: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Spectral centroid (N,) of magnitude spectrograms (N, bins, frames): how bright each is."""
    spectrum = np.asarray(m, dtype=np.float64).sum(axis=2)
    return (spectrum * freqs).sum(axis=1) / np.maximum(spectrum.sum(axis=1), 1e-12)


def interpolation_rows(
    space: LatentSpace,
    x: np.ndarray,
    z_real: np.ndarray,
    names: list[str],
    cats: list[str],
    peaks: np.ndarray,
    rng: np.random.Generator,
    args: argparse.Namespace,
) -> list[str]:
    """Table rows on interpolation midpoints (raw model output and rendered as written), between
    notes of different categories where possible."""
    pairs: list[tuple[np.int64, np.int64]] = []
    while len(pairs) < args.pairs:
        i, j = rng.choice(len(x), 2, replace=False)
        if cats[i] != cats[j] or rng.random() < 0.2:
            pairs.append((i, j))
    ia, ib = np.array(pairs).T
    ends_a = mags(space, space.decode(z_real[ia]))
    ends_b = mags(space, space.decode(z_real[ib]))
    mids = mags(space, space.decode(0.5 * (z_real[ia] + z_real[ib])))
    quieter = np.minimum(energy_db(ends_a), energy_db(ends_b))
    mid_vs = energy_db(mids) - quieter
    t0 = time.perf_counter()
    r_rms, r_peak = rendered_interpolations(
        space, x, names, cats, peaks, [(int(i), int(j)) for i, j in pairs], args.griffin_lim_iters
    )
    print(f"rendered {len(pairs)} interpolations in {time.perf_counter() - t0:.0f} s")
    r_vs = r_rms[:, 1] - np.minimum(r_rms[:, 0], r_rms[:, 2])
    q = int(np.argmin(r_rms[:, 1]))
    for n, (i, j) in enumerate(pairs):
        print(
            f"  pair {n:2d}: {names[i]} ({peaks[i]:.3f}) / {names[j]} ({peaks[j]:.3f}): "
            f"raw {mid_vs[n]:+.1f} dB; rendered RMS dBFS {r_rms[n, 0]:.1f} / {r_rms[n, 1]:.1f} / "
            f"{r_rms[n, 2]:.1f}, midpoint vs quieter {r_vs[n]:+.1f} dB"
        )
    return [
        f"| midpoint loudness - quieter end-point, dB: min / median / max | {mid_vs.min():+.1f} / {np.median(mid_vs):+.1f} / {mid_vs.max():+.1f} |",
        f"| midpoints more than 6 dB below the quieter end-point | {int((mid_vs < -6).sum())} of {len(mid_vs)} |",
        f"| rendered (as written): midpoint RMS - quieter end-point RMS, dB: min / median / max | {r_vs.min():+.1f} / {np.median(r_vs):+.1f} / {r_vs.max():+.1f} |",
        f"| rendered: midpoints more than 6 dB below the quieter end-point | {int((r_vs < -6).sum())} of {len(r_vs)} |",
        f"| rendered: quietest midpoint, RMS / peak, dBFS | {r_rms[q, 1]:.1f} / {r_peak[q, 1]:.1f} |",
    ]


def mean_offdiag(d: np.ndarray) -> float:
    n = d.shape[0]
    return float(d[~np.eye(n, dtype=bool)].mean())


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("model", nargs="?", type=Path, help="trained model directory")
    p.add_argument("--count", type=int, default=64, help="real notes compared")
    p.add_argument(
        "--draws",
        type=int,
        default=256,
        help="random sounds per distribution (medians of 64 "
        "draws vary by about 25%% from seed to seed)",
    )
    p.add_argument("--pairs", type=int, default=32, help="interpolation pairs")
    p.add_argument("--library-notes", type=int, default=256)
    p.add_argument("--train-seconds", type=float, default=240.0)
    p.add_argument("--model-out", type=Path, default=Path("/tmp/samplegen-bench-generate-model"))
    p.add_argument("--griffin-lim-iters", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-append", action="store_true")
    p.add_argument(
        "--only-random",
        action="store_true",
        help="measure random sounds only (no interpolations, no speed): for slow encoders",
    )
    args = p.parse_args()
    torch.set_num_threads(2)

    if args.model is None:
        from samplegen.dsp.config import CodecConfig

        codec = CodecConfig()
        x, names, cats, peaks = load_library(codec, args.library_notes, args.seed)
        print(f"training a small model on {len(x)} library notes ...")
        origin = train_small_model(x, codec, args.model_out, args.train_seconds, args.seed)
        model_dir = args.model_out
    else:
        model_dir, origin = args.model, "given"
    space = load_space(model_dir)
    if args.model is not None:
        x, names, cats, peaks = load_library(space.codec, args.library_notes, args.seed)
    rng = np.random.default_rng(args.seed)
    seconds_per_note = space.codec.num_samples / space.codec.sample_rate

    z_real = space.encode(x)
    interp_rows: list[str] = []
    if not args.only_random:
        interp_rows = interpolation_rows(space, x, z_real, names, cats, peaks, rng, args)

    # Diversity, novelty, level and brightness of random sounds, per distribution.
    n = min(args.count, len(x))
    real_idx = rng.choice(len(x), n, replace=False)
    real = mags(space, x[real_idx])
    recon = mags(space, space.decode(z_real[real_idx]))
    freqs = np.linspace(0.0, space.codec.sample_rate / 2, real.shape[1])
    all_real = mags(space, x)
    d_real = pairwise_lsd(real, all_real)
    d_real[np.arange(n), real_idx] = np.inf  # not itself
    nn_real = d_real.min(axis=1)
    div_real, div_recon = (mean_offdiag(pairwise_lsd(m)) for m in (real, recon))
    sources: list[tuple[str, np.ndarray]] = []
    if space.has_prior:
        sources.append(("prior", space.sample_prior(args.draws, 1.0, args.seed)))
    if space.fitted is not None:
        fit_rng = np.random.default_rng(args.seed)
        sources.append(("fitted codes", space.fitted.sample(args.draws, 1.0, fit_rng)))
    if not sources:
        from samplegen.generate.latent import sample_empirical

        sources.append(("empirical", sample_empirical(space.stats(x), args.draws, 1.0, rng)))
    random_rows = [
        f"| real notes: energy / spectral centroid, median | {np.median(energy_db(real)):.1f} dB "
        f"/ {np.median(centroid_hz(real, freqs)):,.0f} Hz |",
        f"| reconstructions of those notes: energy / spectral centroid, median | "
        f"{np.median(energy_db(recon)):.1f} dB / {np.median(centroid_hz(recon, freqs)):,.0f} Hz |",
        f"| reference: nearest other library note to a real note, dB: median | {np.median(nn_real):.2f} |",
        f"| diversity ratio reconstructions / real | {div_recon / div_real:.2f} |",
    ]
    for label, z in sources:
        rand = mags(space, space.decode(z))
        div_rand = mean_offdiag(pairwise_lsd(rand))
        nn_rand = pairwise_lsd(rand, all_real).min(axis=1)
        random_rows += [
            f"| {label}: mean pairwise distance random / real, dB | {div_rand:.2f} / {div_real:.2f} |",
            f"| {label}: diversity ratio random / real | {div_rand / div_real:.2f} |",
            f"| {label}: nearest library note to a random sound, dB: min / median | {nn_rand.min():.2f} / {np.median(nn_rand):.2f} |",
            f"| {label}: energy / spectral centroid of random sounds, median | {np.median(energy_db(rand)):.1f} dB / {np.median(centroid_hz(rand, freqs)):,.0f} Hz |",
        ]

    speed_rows: list[str] = []
    if not args.only_random:
        # Speed (16 notes).
        z16 = sources[0][1][:16]
        t0 = time.perf_counter()
        out16 = space.decode(z16)
        t_dec = time.perf_counter() - t0
        t0 = time.perf_counter()
        decode_batch(out16, space.codec, n_iter=args.griffin_lim_iters, seed=0)
        t_gl = time.perf_counter() - t0
        audio_s = len(z16) * seconds_per_note
        x_dec, x_full = audio_s / t_dec, audio_s / (t_dec + t_gl)
        speed_rows = [
            f"| speed latent -> model output (16 notes) | {x_dec:,.0f}x real time |",
            f"| speed latent -> audio with Griffin-Lim ({args.griffin_lim_iters} iterations) | {x_full:,.1f}x real time |",
        ]

    fitted = space.fitted
    command = (
        f".venv/bin/python benchmarks/generate.py{' ' + str(args.model) if args.model else ''}"
    )
    lines = [
        f"## generation (benchmarks/generate.py), {dt.date.today().isoformat()}",
        "",
        f"- Command: `{command}{' --only-random' if args.only_random else ''}`"
        f" (count {args.count}, draws {args.draws}, pairs {args.pairs}, {len(x)} library notes, "
        f"seed {args.seed})",
        f"- Machine: {os.cpu_count()}-core CPU, "
        f"{'GPU: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'} "
        f"({platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}); "
        "speeds count whatever else ran on the machine at the time.",
        f"- Model: {space.describe()['name']} ({space.dim} latents, variational {space.is_variational}); {origin}.",
        f"- {args.draws} random sounds (T = 1) from each of: "
        + "; ".join(
            {
                "prior": "`prior`, the model's own prior",
                "fitted codes": "`fitted codes`, the Gaussian mixture of the training codes "
                f"stored with the model ({fitted.components if fitted else 0} components; "
                f"{fitted.source if fitted else ''})",
                "empirical": "`empirical`, the Gaussian of the library notes' latents",
            }[label]
            for label, _ in sources
        )
        + ".",
        "- Distances: log-spectral distance (dB) between linear STFT magnitudes (model outputs; "
        "real notes as encoded): per frame the RMS over bins of the dB difference, each "
        "spectrogram floored 80 dB below its own peak, averaged over frames; symmetric. Energy: "
        "mean squared linear magnitude in dB; spectral centroid: magnitude-weighted mean "
        "frequency of the whole note.",
    ]
    if interp_rows:
        lines.append(
            f"- Interpolation midpoints, two views of the same {args.pairs} pairs of library notes: "
            "*raw* rows are the model output (energy of the linear STFT magnitude of the decoded "
            "latent midpoint against the quieter decoded end-point), before any level is restored; "
            "*rendered* rows are what `samplegen generate interpolate A B --steps 3` writes: "
            "`plan_interpolate` on the notes with their original peaks (`load_wave`'s, as the command "
            "records them; each sound's gain is the two peaks mixed in dB, so the midpoint gets their "
            "geometric mean), `decode_waves` (Griffin-Lim, "
            f"{args.griffin_lim_iters} iterations, seed 0, peak-normalised), `write_wav` with that "
            "gain (PCM_16), read back; level = RMS in dBFS (a full-scale sine is -3.0)."
        )
    lines += ["", "| measure | value |", "|---|---|", *interp_rows, *random_rows, *speed_rows, ""]
    text = "\n".join(lines)
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
