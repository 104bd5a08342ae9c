"""The waveform path's VAE at several KL weights (beta), over one wave_quality run's outer model.

Usage: .venv/bin/python benchmarks/wave_beta.py RUN [--betas 0.1,1,10,30] [--no-append]

RUN is a finished `benchmarks/wave_quality.py` run folder (its outer study and encodings are
reused, read only). Why: a VAE whose KL term weighs little next to the reconstruction error of a
large code (harmonic_ae's 33 x 87 values) learns latents far from its N(0, 1) prior, so its
reconstructions are good but sounds drawn from the prior fall off the sounds it learnt. For each
beta, one chained study (`run_chain`: the same VAE as wave_quality's `--vae quick` but for beta),
then on the test split: `evaluate_model`'s figures, the identity figures of wave_quality.py
(keeps its note, keeps its instrument), how far the latents sit from the prior (the test
posterior means' mean and spread per dimension, KL per dimension), and the spread of sounds
drawn from the prior against the spread of the test notes (MR-STFT; 1 = as varied as real notes).
Selection is on validation: the end-to-end validation loss each study reports.
Stages are resumable (RUN/beta_sweep/.stages). Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wave_quality as wq  # noqa: E402  (the benchmark next to this one)
from results_file import publish  # noqa: E402

RANDOM_COUNT = 64
SAMPLE_RATE = 44100  # the wave codec's default, which wave_quality's datasets use


def spectral_centroid_hz(audio: np.ndarray, rate: int) -> np.ndarray:
    """Magnitude-weighted mean frequency of each row's whole-note spectrum (N,): how bright."""
    mag = np.abs(np.fft.rfft(audio, axis=-1))
    freqs = np.fft.rfftfreq(audio.shape[-1], 1.0 / rate)
    return (mag * freqs).sum(axis=-1) / np.maximum(mag.sum(axis=-1), 1e-12)


def _prior_sounds(model_dir: str, count: int, seed: int) -> np.ndarray:
    """`count` sounds decoded from N(0, 1) latents (what `samplegen generate random` draws)."""
    import torch

    from samplegen.dsp.codec import decode_batch
    from samplegen.models.artifact import load_model

    loaded = load_model(model_dir)
    model = loaded.model.eval()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, *model.latent_shape, generator=g)
    with torch.no_grad():
        out = torch.cat([model.decode(z[i : i + 16]) for i in range(0, count, 16)])
    return np.asarray(decode_batch(out.numpy(), loaded.codec), dtype=np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a finished benchmarks/wave_quality.py run folder")
    p.add_argument("--betas", default="0.1,1,10,30")
    p.add_argument("--vae-epochs", type=int, default=60)
    p.add_argument("--cpus-per-trial", type=float, default=2.0)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, int(args.cpus_per_trial)))
    from samplegen.platform.chain import run_chain
    from samplegen.platform.stages import MARKER_DIR, StageRunner
    from samplegen.platform.study import ensure_ray

    run = Path(args.run).expanduser().absolute()
    marker = run / MARKER_DIR / "outer_study.json"
    if not marker.exists():
        raise SystemExit(f"{run}: not a finished wave_quality run (no {marker})")
    outer = json.loads(marker.read_text())["outputs"]
    run_settings = json.loads((run / "run.json").read_text())
    try:
        betas = [float(b) for b in args.betas.split(",")]
    except ValueError:
        p.error(f"--betas: {args.betas!r} is not a comma-separated list of numbers")
    if not all(b >= 0 for b in betas):
        p.error(f"--betas: every KL weight must be >= 0, got {args.betas}")
    sweep = run / "beta_sweep"
    settings = {"vae": wq.VAE_QUICK, "betas": betas, "vae_epochs": args.vae_epochs}
    stages = StageRunner(sweep, settings)
    ensure_ray(num_cpus=2, object_store_memory=1_500_000_000)

    dataset = run / "dataset"
    real = wq.RenderedNotes.of(dataset)
    # How far a real note is from its nearest other real note: the yardstick for sounds drawn
    # from the prior (off-model sounds sit far from every real note).
    among_real = real.pairwise.copy()
    np.fill_diagonal(among_real, np.inf)
    real_nearest_other = float(np.median(among_real.min(axis=1)))
    real_centroid = spectral_centroid_hz(real.audio, SAMPLE_RATE)
    rows: dict[str, dict[str, Any]] = {}
    for beta in betas:
        key = f"beta_{beta:g}"
        hp = {**wq.VAE_QUICK, "beta": beta}

        def train(key: str = key, hp: dict[str, Any] = hp) -> dict[str, Any]:
            if hp == run_settings["vae"] and (run / MARKER_DIR / "vae_base.json").exists():
                # The run's own VAE is this one (training is deterministic on CPU): reuse it.
                return _reuse(run)
            space = wq._write_space(sweep / "spaces" / f"{key}.yaml", "vae", hp)
            config = wq._study_config(
                key, "vae", sweep, "", space, args.vae_epochs, args.cpus_per_trial
            )
            result = run_chain(
                config,
                outer["study"],
                data=str(dataset),
                encoded=str(run / "encoded"),
                combined_out=sweep / "models" / key,
                resume=wq._started(config),
            )
            if result.combined_model is None:
                raise SystemExit(f"{key}: the study produced no model (see {result.study.path})")
            best = result.study.best or {}
            return {"model": str(result.combined_model), "val_loss": best.get("best_val_loss")}

        def measure(key: str = key) -> dict[str, Any]:
            from samplegen.platform.evaluation import evaluate_model

            model = stages.outputs(f"train_{key}")["model"]
            m = evaluate_model(
                model, dataset, split="test", out=sweep / "evaluation" / key, griffin_lim_iters=0
            )
            recon, _ = wq.recon_in_order(model, dataset, 0, real)
            ident = wq.identity_figures(recon, real.audio, real.mean, real.instruments)
            prior = _prior_sounds(model, RANDOM_COUNT, seed=0)
            prior_spread = wq.mean_off_diagonal(wq.pairwise_mrstft(prior, prior))
            to_real = wq.pairwise_mrstft(prior, real.audio).min(axis=1)
            centroid = spectral_centroid_hz(prior, SAMPLE_RATE)
            return {
                "test": wq._summary(m),
                "identity": ident,
                "latent_mean": m["latent"]["mean"],
                "latent_std": m["latent"]["std"],
                "prior_diversity": prior_spread / real.mean,
                "prior_nearest_real_median": float(np.median(to_real)),
                "prior_centroid_khz": [
                    float(np.median(centroid)) / 1000,
                    float(centroid.max()) / 1000,
                ],
            }

        trained = stages.run(f"train_{key}", train)
        rows[key] = {
            "beta": beta,
            **trained,
            **stages.run(f"measure_{key}", measure),
            "real_nearest_other_median": real_nearest_other,
            "real_centroid_khz": [
                float(np.median(real_centroid)) / 1000,
                float(real_centroid.max()) / 1000,
            ],
        }

    text = _report(args, run_settings, rows)
    publish(text, append=not args.no_append)
    return 0


def _reuse(run: Path) -> dict[str, Any]:
    """The wave_quality run's own base VAE: its combined model and best validation loss."""
    import pyarrow.csv as pacsv

    from samplegen.platform.stages import MARKER_DIR
    from samplegen.platform.study import best_row

    vae = json.loads((run / MARKER_DIR / "vae_base.json").read_text())["outputs"]
    rows = pacsv.read_csv(Path(vae["study"]) / "results.csv").to_pylist()
    best = best_row(rows) or {}
    return {"model": vae["model"], "val_loss": best.get("best_val_loss"), "reused": True}


def _report(args: argparse.Namespace, run_settings: dict[str, Any], rows: dict[str, Any]) -> str:
    import torch

    names = list(rows)

    def line(label: str, get: Any, spec: str = ".3f") -> str:
        return f"| {label} | " + " | ".join(wq._fmt(get(rows[n]), spec) for n in names) + " |"

    def centroids(values: list[float]) -> str:
        return f"{values[0]:.2f} / {values[1]:.2f}"

    def spread(values: list[float]) -> str:
        v = np.abs(np.asarray(values))
        return f"{v.min():.2f}-{v.max():.2f}"

    table = [
        "| figure | " + " | ".join(f"beta {rows[n]['beta']:g}" for n in names) + " |",
        "|---|" + "---:|" * len(names),
        line("end-to-end validation loss (MR-STFT; selection)", lambda r: r["val_loss"]),
        line("MR-STFT test, vs the rendered waveform", lambda r: r["test"]["mrstft"]),
        line("active latent units (test, of 8)", lambda r: r["test"]["active_units"], "d"),
        line("KL total, nats (test)", lambda r: r["test"]["kl_total"], ".1f"),
        "| test posterior means: abs mean per dimension, min-max | "
        + " | ".join(spread(rows[n]["latent_mean"]) for n in names)
        + " |",
        "| test posterior means: spread per dimension, min-max | "
        + " | ".join(spread(rows[n]["latent_std"]) for n in names)
        + " |",
        line(
            "keeps its note: nearest rendered note is its own",
            lambda r: r["identity"]["nearest_is_own"],
        ),
        line(
            "keeps its instrument: nearest rendered note of its instrument",
            lambda r: r["identity"]["nearest_same_instrument"],
        ),
        line(
            "diversity of reconstructions / real notes", lambda r: r["identity"]["diversity_ratio"]
        ),
        line(
            f"diversity of {RANDOM_COUNT} sounds from the prior / real notes",
            lambda r: r["prior_diversity"],
        ),
        line(
            "sounds from the prior: MR-STFT to the nearest real note, median",
            lambda r: r["prior_nearest_real_median"],
        ),
        line(
            "(real notes: MR-STFT to the nearest other real note, median)",
            lambda r: r["real_nearest_other_median"],
        ),
        "| sounds from the prior: spectral centroid, median / max kHz | "
        + " | ".join(centroids(rows[n]["prior_centroid_khz"]) for n in names)
        + " |",
        "| (real test notes: spectral centroid, median / max kHz) | "
        + " | ".join(centroids(rows[n]["real_centroid_khz"]) for n in names)
        + " |",
    ]
    cmd = ".venv/bin/python benchmarks/wave_beta.py " + " ".join(sys.argv[1:])
    return "\n".join(
        [
            f"## Waveform path: the VAE's KL weight (benchmarks/wave_beta.py), "
            f"{dt.date.today().isoformat()}",
            "",
            f"- Command: `{cmd}`",
            f"- Machine: {platform.machine()} 2-core CPU, no GPU; torch {torch.__version__}, "
            f"{max(1, int(args.cpus_per_trial))} thread(s)",
            f"- Outer: {run_settings['outer_model']} {json.dumps(run_settings['outer'])}, "
            f"{run_settings['outer_epochs']} epochs (the run's outer study, reused)",
            f"- VAE: {json.dumps(wq.VAE_QUICK)} with beta as below, {args.vae_epochs} epochs, "
            "no code refinement",
            f"- Test split: {rows[names[0]]['identity']['count']} notes of instruments never "
            "trained on; 'by chance' keeps its instrument at "
            f"{rows[names[0]]['identity']['same_instrument_chance']:.3f}",
            "",
            *table,
            "",
            "Posterior means: per latent dimension, the mean and the spread (standard deviation) "
            "over the test notes of the encoder's mean; a latent space that matches its N(0, 1) "
            "prior has means near 0 and spreads near 1. Diversity: mean pairwise MR-STFT "
            "distance between sounds over that between the rendered test notes.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
