"""Waveform path quality (issue 9): audio_conv_ae + chained 8-latent VAE, with collapse checks.

Usage: .venv/bin/python benchmarks/wave_quality.py [--run runs/wave_quality] [--no-append]

Stages (each reused when a rerun finds it done, via the platform's StageRunner in RUN):
1. `prepare_dataset("builtin", ..., CodecConfig(representation="wave"))`: FluidR3, C3/C4/C5,
   2 s at 44.1 kHz (the codec defaults), splits by GM program.
2. `run_study` of `audio_conv_ae` (what `samplegen tune outer --space RUN/spaces/outer.yaml`
   runs): one trial of a small configuration written as a constant space.
3. `run_chain` (what `samplegen tune vae --outer RUN/outer_study` runs): the VAE over the frozen
   outer encodings, end-to-end objective, combined export; then the VAE's own remedies against
   collapse (free bits, KL warm-up, beta < 1), each as its own chained study over the same
   encodings (--no-remedies: the base VAE only).
4. `evaluate_model` on the test and train splits for the outer and every combined model, and for
   the STFT path's existing run (read only; results go under RUN/stft_path).
5. Collapse and identity figures over the test split, on audio: every reconstruction against every
   real note (the wave dataset's decoded input, i.e. the rendered waveform, for both paths) by the
   multi-resolution STFT distance of samplegen.dsp.metrics: the fraction whose nearest real note
   is its own, and the mean pairwise distance between reconstructions over that between the real
   notes (near 0: every input decodes to nearly the same sound). The nearest-note figures are
   also given by a log-spectral distance floored 80 dB below each note's peak, which judges the
   audible spectrum rather than near-silent bins.
Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from results_file import publish

FFT_SIZES = (512, 1024, 2048)  # multi_resolution_stft_distance's defaults
LSD_FFT = 2048  # one resolution for the floored log-spectral distance (hop a quarter of it)
HOP_FRACTION = 0.25

# A small waveform auto-encoder: the addendum's kernels/strides (40/16, 28/11, 20/8) with fewer
# channels (latent 16 x 61), so 2 s notes at 44.1 kHz train in minutes on one shared CPU core.
OUTER_CONFIG: dict[str, Any] = {
    "depth": 3,
    "channels": 16,
    "kernel_size": 40,
    "ratio": 0.7,
    "batch_exp": 5,
    "lr_exp": -4.0,
    "lr_schedule": "cosine",
    "weight_decay": 0.0,
}
# The harmonic-plus-noise auto-encoder (samplegen.models.harmonic_ae): 32 code values per frame
# plus the pitch row (33 x 87), 64 harmonics and 64 noise bands, trained on its MR-STFT loss.
HARMONIC_CONFIG: dict[str, Any] = {
    "frame_latent": 32,
    "hidden": 256,
    "depth": 2,
    "context": 3,
    "harmonics": 64,
    "noise_bands": 64,
    "batch_exp": 4,
    "lr_exp": -4.2,  # the trainer scales by the batch: Adam at 1e-3
    "lr_schedule": "cosine",
    "weight_decay": 0.0,
}
OUTER_CONFIGS: dict[str, dict[str, Any]] = {
    "audio_conv_ae": OUTER_CONFIG,
    "harmonic_ae": HARMONIC_CONFIG,
}
# The quick preset's VAE as its study chose it on the STFT path (beta 0.1, depth 3, ratio 0.15,
# linear KL warm-up over 20 epochs), without code refinement: refinement fits codes to the
# waveform itself, which rewards phase, not the sound.
VAE_QUICK: dict[str, Any] = {
    "latent": 8,
    "depth": 3,
    "ratio": 0.15,
    "beta": 0.1,
    "warmup": "linear",
    "warmup_epochs": 20,
    "free_bits": 0.0,
    "batch_exp": 4,
    "lr_exp": -4.7,  # 3.2e-4 after the batch scaling: what the quick study chose
    "lr_schedule": "cosine",
    "weight_decay": 0.0,
}
# The quick preset's VAE (latent 8, KL warm-up over 20 epochs) with fixed sizes.
VAE_BASE: dict[str, Any] = {
    "latent": 8,
    "depth": 3,
    "ratio": 0.2,
    "beta": 1.0,
    "warmup": "linear",
    "warmup_epochs": 20,
    "free_bits": 0.0,
    "batch_exp": 4,
    "lr_exp": -5.0,
    "weight_decay": 0.0,
}
# The remedies models/vae.py offers (free bits, KL warm-up, beta < 1), each one chained study.
REMEDIES: dict[str, dict[str, Any]] = {
    "free_bits": {"free_bits": 0.5},
    "beta_0.25": {"beta": 0.25, "free_bits": 0.5},
    "cyclical": {"beta": 0.25, "free_bits": 0.5, "warmup": "cyclical", "warmup_epochs": 20},
}
# Collapse: an inactive unit, or reconstructions whose mutual distance is under this fraction of
# that between the real notes.
DIVERSITY_COLLAPSED = 0.3


def _outer_config(args: argparse.Namespace) -> dict[str, Any]:
    """The outer model's configuration, with the spectral loss weight when one is asked for."""
    config = dict(OUTER_CONFIGS[args.outer_model])
    if args.spectral_weight:
        config["spectral_weight"] = args.spectral_weight
    return config


def _vae_config(args: argparse.Namespace) -> dict[str, Any]:
    """The chained VAE's configuration, with the KL weight when one is asked for."""
    config = dict(VAE_QUICK if args.vae == "quick" else VAE_BASE)
    if args.vae_beta is not None:
        config["beta"] = args.vae_beta
    return config


def _write_space(path: Path, model: str, config: dict[str, Any]) -> str:
    import yaml

    params = {k: {"type": "const", "value": v} for k, v in config.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump({"model": model, "params": params}, sort_keys=False))
    tmp.replace(path)
    return str(path)


def _study_config(
    name: str, model: str, run: Path, data: str, space: str, epochs: int, cpus: float
) -> Any:
    from samplegen.platform.study import StudyConfig

    return StudyConfig(
        name=name,
        model=model,
        data=data,
        search="random",
        scheduler="fifo",
        trials=1,
        epochs=epochs,
        cpus_per_trial=cpus,
        max_concurrent=1,
        storage=str(run),
        space=space,
        seed=0,
        # The test/validation instruments are never trained on; a wave model's early validation
        # loss can sit far above its train loss, so the overfit stop would end it at epoch 2.
        overfit_limit=None,
        device="cpu",
    )


def _started(config: Any) -> bool:
    from samplegen.platform.study import STUDY_JSON, StudyFiles

    return StudyFiles(config.storage, config.name).exists(STUDY_JSON)


def _mags(audio: np.ndarray) -> list[Any]:
    """Per FFT size, the STFT magnitudes (N, bins, frames) exactly as multi_resolution_stft_distance
    computes them (Hann window, hop = size / 4, centred)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    out = []
    for n_fft in FFT_SIZES:
        hop = max(1, int(n_fft * HOP_FRACTION))
        window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype)
        spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
        out.append(spec.abs())
    return out


def pairwise_mrstft_terms(
    estimates: np.ndarray, references: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two terms of multi_resolution_stft_distance for every pair, each averaged over the FFT
    sizes: (spectral convergence of linear magnitudes, mean absolute log-magnitude difference).

    Each note's spectrograms are computed once (the metric itself recomputes both per pair, which
    is about 100 times slower for a 93 x 93 matrix).
    """
    import torch

    est, ref = _mags(estimates), _mags(references)
    sc = torch.zeros(len(estimates), len(references), dtype=torch.float64)
    log_l1 = torch.zeros_like(sc)
    exact = "donot_use_mm_for_euclid_dist"  # the matmul shortcut loses digits near 0
    for se, sr in zip(est, ref, strict=True):
        se, sr = se.flatten(1), sr.flatten(1)
        ref_norm = torch.linalg.vector_norm(sr, dim=1).double()
        sc += torch.cdist(se, sr, p=2, compute_mode=exact).double() / (ref_norm + 1e-12)
        logs = torch.cdist(torch.log(se + 1e-7), torch.log(sr + 1e-7), p=1) / se.shape[1]
        log_l1 += logs.double()
    return (sc / len(FFT_SIZES)).numpy(), (log_l1 / len(FFT_SIZES)).numpy()


def pairwise_mrstft(estimates: np.ndarray, references: np.ndarray) -> np.ndarray:
    """D[i, j] = multi_resolution_stft_distance(estimates[i], references[j]) for every pair (the
    sum of `pairwise_mrstft_terms`). The diagonal is checked against the platform's function in
    `_check_pairwise`."""
    sc, log_l1 = pairwise_mrstft_terms(estimates, references)
    return sc + log_l1


def _check_pairwise(estimates: np.ndarray, references: np.ndarray, d: np.ndarray) -> None:
    from samplegen.dsp.metrics import multi_resolution_stft_distance

    k = min(8, len(estimates), len(references))
    direct = np.atleast_1d(multi_resolution_stft_distance(estimates[:k], references[:k]))
    if not np.allclose(np.diag(d)[:k], direct, rtol=1e-3, atol=1e-4):
        raise AssertionError(f"pairwise MR-STFT disagrees: {np.diag(d)[:k]} vs {direct}")


def floored_lsd(estimates: np.ndarray, references: np.ndarray) -> np.ndarray:
    """benchmarks/generate.py's log-spectral distance (dB; each spectrogram floored 80 dB below
    its own peak, so near-silent bins do not count) between every two notes' audio."""
    import torch

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # generate.py sits beside this script; add it once, not per call
        sys.path.insert(0, here)
    from generate import pairwise_lsd

    def mags(audio: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        window = torch.hann_window(LSD_FFT)
        spec = torch.stft(x, LSD_FFT, LSD_FFT // 4, window=window, return_complex=True)
        return spec.abs().numpy()

    return pairwise_lsd(mags(estimates), mags(references))


def mean_off_diagonal(d: np.ndarray) -> float:
    """Mean of a square matrix without its diagonal (distances between different notes)."""
    return float(d[~np.eye(len(d), dtype=bool)].mean())


def identity_figures(
    recon_audio: np.ndarray,
    real_audio: np.ndarray,
    real_mean: float,
    instruments: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Own-note distance, nearest-real-note accuracy and diversity of reconstructions.

    `real_mean`: mean_off_diagonal(pairwise_mrstft(real_audio, real_audio)). `instruments`: each
    real note's instrument (the dataset's split group, a GM program for the library); with it,
    the fraction whose nearest real note is of its own instrument (any pitch or velocity).
    """
    cross = pairwise_mrstft(recon_audio, real_audio)
    _check_pairwise(recon_audio, real_audio, cross)
    recon_mean = mean_off_diagonal(pairwise_mrstft(recon_audio, recon_audio))
    n = len(real_audio)
    nearest = cross.argmin(axis=1)
    own = np.diag(cross)
    # Rank of the own note among all real notes (1 = nearest).
    rank = (cross < own[:, None]).sum(axis=1) + 1
    out = {
        "own_mrstft_mean": float(own.mean()),
        "nearest_is_own": float((nearest == np.arange(n)).mean()),
        "own_rank_median": float(np.median(rank)),
        "recon_pairwise_mean": recon_mean,
        "real_pairwise_mean": real_mean,
        "diversity_ratio": recon_mean / real_mean,
        "count": n,
    }
    # The MR-STFT distance's log term counts bins down to -140 dB, which can make one real note
    # everyone's nearest; the floored LSD judges the audible spectrum (RESULTS.md, "Does the
    # waveform path keep its instrument? The distance decides").
    lsd_nearest = floored_lsd(recon_audio, real_audio).argmin(axis=1)
    out["lsd_nearest_is_own"] = float((lsd_nearest == np.arange(n)).mean())
    out["lsd_hub_share"] = float(np.bincount(lsd_nearest, minlength=n).max() / n)
    if instruments is not None:
        inst = np.asarray(instruments)
        out["nearest_same_instrument"] = float((inst[nearest] == inst).mean())
        out["lsd_nearest_same_instrument"] = float((inst[lsd_nearest] == inst).mean())
        # Chance: a nearest note drawn at random from the 93.
        out["same_instrument_chance"] = float(
            np.mean([(inst == inst[i]).sum() / n for i in range(n)])
        )
    return out


def _recon_audio(
    model_dir: str, dataset: Path, split: str, gl_iters: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(decoded reconstructions, decoded inputs, names) of a split, decoded as evaluation does.

    STFT inputs and outputs both go through Griffin-Lim with item i seeded ``i``: the inputs as
    the path itself can give them back, phase recovery included.
    """
    from samplegen.dsp.codec import decode_batch
    from samplegen.models.artifact import load_model
    from samplegen.platform.datasets import load_dataset
    from samplegen.platform.evaluation.inference import run_model

    loaded = load_model(model_dir)
    data = load_dataset(dataset, splits=(split,)).splits[split]
    x = np.asarray(data.x, dtype=np.float32)
    out = run_model(loaded.model, x, batch_size=16, device="cpu")
    assert out.recon is not None  # kept unless run_model is told otherwise
    recon = np.asarray(
        decode_batch(out.recon, loaded.codec, n_iter=gl_iters, seed=0, device="cpu"),
        dtype=np.float32,
    )
    inputs = np.asarray(
        decode_batch(x, loaded.codec, n_iter=gl_iters, seed=0, device="cpu"), dtype=np.float32
    )
    return recon, inputs, [m["name"] for m in data.meta]


@dataclass(frozen=True)
class RenderedNotes:
    """A wave dataset's test notes as rendered (decoded waveforms), the reference that every
    path's reconstructions are compared with."""

    dataset: Path
    audio: np.ndarray
    names: list[str]
    instruments: list[str]  # each note's split group: its GM program for the built-in library
    pairwise: np.ndarray  # MR-STFT distance between every two notes

    @property
    def mean(self) -> float:
        """Mean MR-STFT distance between different notes."""
        return mean_off_diagonal(self.pairwise)

    @classmethod
    def of(cls, dataset: Path) -> RenderedNotes:
        from samplegen.dsp.codec import decode_batch
        from samplegen.platform.datasets import load_dataset

        loaded = load_dataset(dataset, splits=("test",))
        test = loaded.splits["test"]
        audio = np.asarray(decode_batch(np.asarray(test.x), loaded.codec))
        return cls(
            dataset=dataset,
            audio=audio,
            names=[m["name"] for m in test.meta],
            instruments=[str(m["group"]) for m in test.meta],
            pairwise=pairwise_mrstft(audio, audio),
        )


def recon_in_order(
    model: str, data: Path, gl: int, real: RenderedNotes
) -> tuple[np.ndarray, np.ndarray]:
    """(decoded reconstructions, decoded inputs) of `data`'s test split, in `real`'s note order."""
    audio, inputs, names = _recon_audio(model, data, "test", gl)
    order = [names.index(n) for n in real.names]
    return audio[order], inputs[order]


def _evaluate_split(model: str, data: Path, split: str, out: Path, gl: int) -> dict[str, Any]:
    """`evaluate_model` of one split, summarised."""
    from samplegen.platform.evaluation import evaluate_model

    m = evaluate_model(model, data, split=split, out=out, griffin_lim_iters=gl)
    return _summary(m)


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    lat = m.get("latent") or {}
    kl = lat.get("kl_per_dim")
    return {
        "rms_percent": m["loss"]["rms_percent"],
        "loss_mean": m["loss"]["mean"],
        "mrstft": m["spectral"]["audio"]["multi_resolution_stft_distance"]["mean"],
        "lsd_db": m["spectral"]["magnitude"]["log_spectral_distance_db"]["mean"],
        "active_units": lat.get("active_units"),
        "dims": lat.get("dims"),
        "kl_per_dim": kl,
        "kl_total": lat.get("kl_total"),
    }


def _timgm_count(rows: dict[str, dict[str, Any]]) -> int | None:
    for r in rows.values():
        if "timgm6mb" in r:
            return int(r["timgm6mb"]["identity"]["waveform"]["count"])
    return None


def _collapsed(test: dict[str, Any], ident: dict[str, Any]) -> bool:
    return test["active_units"] < test["dims"] or ident["diversity_ratio"] < DIVERSITY_COLLAPSED


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/wave_quality")
    p.add_argument("--outer-epochs", type=int, default=50)
    p.add_argument("--vae-epochs", type=int, default=60)
    p.add_argument("--stft-run", default="/work/exp/run_quick", help="an STFT-path run (read only)")
    p.add_argument("--stft-gl-iters", type=int, default=32, help="Griffin-Lim for the STFT path")
    p.add_argument("--no-remedies", action="store_true", help="train the base VAE only")
    p.add_argument("--outer-model", choices=sorted(OUTER_CONFIGS), default="audio_conv_ae")
    p.add_argument(
        "--vae",
        choices=("base", "quick"),
        default="base",
        help="base: the original's VAE (beta 1, lr 1e-5); quick: the quick preset's (beta 0.1)",
    )
    p.add_argument(
        "--vae-beta",
        type=float,
        default=None,
        help="the VAE's KL weight instead of the chosen VAE's (harmonic_ae: 10 validates within 1%% "
        "of the best weight and brings the latents near the prior; RESULTS.md 'Waveform path: "
        "the VAE's KL weight')",
    )
    p.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="torch threads of each training trial"
    )
    p.add_argument(
        "--spectral-weight",
        type=float,
        default=0.0,
        help="the outer model's multi-resolution STFT loss weight (audio_conv_ae, 0: waveform "
        "SSE only; harmonic_ae: the scale of its only loss term, default 1)",
    )
    p.add_argument(
        "--no-timgm",
        dest="timgm",
        action="store_false",
        help="skip the TimGM6mb renders of the test instruments (generalisation to other samples)",
    )
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    if args.vae_beta is not None and not args.vae_beta >= 0:
        p.error(f"--vae-beta: the KL weight must be >= 0, got {args.vae_beta}")

    import torch

    # One core unless asked: the machine's other core belongs to a colleague's job.
    torch.set_num_threads(max(1, int(args.cpus_per_trial)))
    torch.set_flush_denormal(True)

    from samplegen.dsp.config import CodecConfig
    from samplegen.platform.chain import run_chain
    from samplegen.platform.datasets import prepare_dataset
    from samplegen.platform.stages import MARKER_DIR, StageRunner
    from samplegen.platform.study import ensure_ray, run_study

    run = Path(args.run).expanduser().absolute()
    outer_config = _outer_config(args)
    vae_base = _vae_config(args)
    settings = {
        "outer_model": args.outer_model,
        "outer": outer_config,
        "vae": vae_base,
        "remedies": REMEDIES,
        "outer_epochs": args.outer_epochs,
        "vae_epochs": args.vae_epochs,
    }
    stages = StageRunner(run, settings)
    # Two logical CPUs, one trial at a time: Ray Data's reads run beside the trial.
    ensure_ray(num_cpus=2, object_store_memory=1_500_000_000)
    times: dict[str, float] = {}

    def timed(name: str, fn: Any) -> dict[str, Any]:
        out = stages.run(name, fn)
        # The stage's own time, also when this run reused it.
        marker = json.loads((run / MARKER_DIR / f"{name}.json").read_text())
        times[name] = float(marker.get("seconds", 0.0))
        return out

    dataset = Path(
        timed(
            "dataset",
            lambda: {
                "dataset": str(
                    prepare_dataset(
                        "builtin",
                        run / "dataset",
                        CodecConfig(representation="wave"),
                        notes="C3,C4,C5",
                        seed=0,
                    )
                )
            },
        )["dataset"]
    )

    def outer_stage() -> dict[str, Any]:
        space = _write_space(run / "spaces" / "outer.yaml", args.outer_model, outer_config)
        config = _study_config(
            "outer_study",
            args.outer_model,
            run,
            str(dataset),
            space,
            args.outer_epochs,
            args.cpus_per_trial,
        )
        result = run_study(config, resume=_started(config))
        if result.best_model is None:
            raise SystemExit(f"outer study produced no model (see {result.path})")
        best = result.best or {}
        return {
            "study": result.path,
            "model": result.best_model,
            "best_epoch": best.get("best_epoch"),
        }

    outer = timed("outer_study", outer_stage)

    def vae_stage(variant: str, hp: dict[str, Any]) -> dict[str, Any]:
        name = f"vae_{variant}"
        space = _write_space(run / "spaces" / f"{name}.yaml", "vae", hp)
        config = _study_config(name, "vae", run, "", space, args.vae_epochs, args.cpus_per_trial)
        result = run_chain(
            config,
            outer["study"],
            data=str(dataset),
            encoded=str(run / "encoded"),
            combined_out=run / "models" / f"combined_{variant}",
            resume=_started(config),
        )
        if result.combined_model is None:
            raise SystemExit(f"VAE study {name} produced no model (see {result.study.path})")
        return {"study": result.study.path, "model": str(result.combined_model)}

    def evaluate_stage(name: str, model: str, data: Path, gl: int) -> dict[str, Any]:
        return {
            split: _evaluate_split(model, data, split, run / "evaluation" / name / split, gl)
            for split in ("test", "train")
        }

    def silence_rms(data: Path) -> float:
        """Test RMS% of an all-zero output in the dataset's own representation (a floor)."""
        from samplegen.dsp.metrics import rms_percent, sample_loss

        x = np.asarray(load_dataset(data, splits=("test",)).splits["test"].x, dtype=np.float64)
        return float(rms_percent(sample_loss(np.zeros_like(x), x).mean(), x[0].size))

    from samplegen.platform.datasets import load_dataset, require_dataset_info

    library_notes = RenderedNotes.of(dataset)

    def identity_stage(
        model: str, data: Path, gl: int, real: RenderedNotes | None = None
    ) -> dict[str, Any]:
        """Identity figures against the inputs decoded by the path's own codec ("codec") and
        against the rendered waveforms ("waveform"); one and the same for the wave path.
        `real`: the rendered test notes of `data` (default: the library's)."""
        real = real or library_notes
        audio, inputs = recon_in_order(model, data, gl, real)
        waveform = identity_figures(audio, real.audio, real.mean, real.instruments)
        if data == real.dataset:
            return {"codec": waveform, "waveform": waveform}
        codec_mean = mean_off_diagonal(pairwise_mrstft(inputs, inputs))
        codec = identity_figures(audio, inputs, codec_mean, real.instruments)
        return {"codec": codec, "waveform": waveform}

    rows: dict[str, dict[str, Any]] = {}
    wave_silence = silence_rms(dataset)
    rows["wave outer"] = {
        "model": outer["model"],
        "silence": wave_silence,
        **timed("eval_outer", lambda: evaluate_stage("outer", outer["model"], dataset, 0)),
        "identity": timed("identity_outer", lambda: identity_stage(outer["model"], dataset, 0)),
    }
    variants = [("base", vae_base)] + [(k, {**vae_base, **v}) for k, v in REMEDIES.items()]
    tried: list[str] = []
    for variant, hp in variants:
        if variant != "base" and args.no_remedies:
            break
        vae = timed(f"vae_{variant}", lambda v=variant, h=hp: vae_stage(v, h))
        rows[f"wave VAE {variant}"] = {
            "model": vae["model"],
            "silence": wave_silence,
            **timed(
                f"eval_{variant}",
                lambda v=variant, m=vae["model"]: evaluate_stage(f"combined_{v}", m, dataset, 0),
            ),
            "identity": timed(
                f"identity_{variant}", lambda m=vae["model"]: identity_stage(m, dataset, 0)
            ),
            "hparams": hp,
            "study": vae["study"],
        }
        tried.append(variant)

    stft = Path(args.stft_run)
    stft_data = stft / "dataset"
    gl = args.stft_gl_iters
    stft_silence = silence_rms(stft_data)
    for label, model in (("STFT outer", "outer"), ("STFT combined", "combined")):
        model_dir = str(stft / "models" / model)
        rows[label] = {
            "model": model_dir,
            "silence": stft_silence,
            **timed(
                f"eval_stft_{model}",
                lambda n=model, d=model_dir: evaluate_stage(f"stft_{n}", d, stft_data, gl),
            ),
            "identity": timed(
                f"identity_stft_{model}", lambda d=model_dir: identity_stage(d, stft_data, gl)
            ),
        }

    if args.timgm:
        # The same instruments' test notes rendered from Debian's TimGM6mb, a SoundFont that
        # shares no samples with FluidR3 (splits follow the program, so these programs were
        # never trained on either), encoded by each path's own codec.
        def timgm_dataset(kind: str, codec: Any) -> Path:
            name = f"timgm6mb_{kind}_dataset"
            out = timed(
                name,
                lambda: {
                    "dataset": str(
                        prepare_dataset(
                            "builtin:timgm6mb",
                            run / name,
                            codec,
                            notes="C3,C4,C5",
                            seed=0,
                        )
                    )
                },
            )
            return Path(out["dataset"])

        timgm_wave = timgm_dataset("wave", CodecConfig(representation="wave"))
        stft_codec = CodecConfig.from_dict(require_dataset_info(stft_data)["codec"])
        timgm_stft = timgm_dataset("stft", stft_codec)
        timgm_notes = RenderedNotes.of(timgm_wave)
        for label, row in rows.items():
            model = row["model"]
            data, gl_row = (timgm_wave, 0) if label.startswith("wave") else (timgm_stft, gl)
            key = label.replace(" ", "_").lower()
            row["timgm6mb"] = {
                **timed(
                    f"eval_timgm_{key}",
                    lambda m=model, d=data, g=gl_row, k=key: _evaluate_split(
                        m, d, "test", run / "evaluation" / "timgm6mb" / k, g
                    ),
                ),
                "identity": timed(
                    f"identity_timgm_{key}",
                    lambda m=model, d=data, g=gl_row: identity_stage(m, d, g, timgm_notes),
                ),
            }

    (run / "wave_quality.json").write_text(json.dumps({"rows": rows, "times": times}, indent=1))
    text = _report(args, rows, tried, outer, times)
    publish(text, append=not args.no_append)
    return 0


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _report(
    args: argparse.Namespace,
    rows: dict[str, dict[str, Any]],
    tried: list[str],
    outer: dict[str, Any],
    times: dict[str, float],
) -> str:
    import torch

    names = list(rows)
    header = "| figure | " + " | ".join(names) + " |"
    sep = "|---|" + "---:|" * len(names)

    def line(label: str, get: Any, spec: str = ".3f") -> str:
        cells = []
        for n in names:
            try:
                cells.append(_fmt(get(rows[n]), spec))
            except (KeyError, TypeError):
                cells.append("-")
        return f"| {label} | " + " | ".join(cells) + " |"

    def kl_cell(r: dict[str, Any]) -> str | None:
        kl = r["test"]["kl_per_dim"]
        return None if kl is None else " ".join(f"{v:.2f}" for v in kl)

    table = [
        header,
        sep,
        line("RMS% test (own representation)", lambda r: r["test"]["rms_percent"]),
        line("RMS% train (own representation)", lambda r: r["train"]["rms_percent"]),
        line("RMS% test of an all-zero output (reference)", lambda r: r["silence"]),
        line("MR-STFT test, evaluation's figure", lambda r: r["test"]["mrstft"]),
        line("MR-STFT train, evaluation's figure", lambda r: r["train"]["mrstft"]),
        line(
            "MR-STFT test vs the rendered waveform",
            lambda r: r["identity"]["waveform"]["own_mrstft_mean"],
        ),
        line("log-spectral distance test (dB)", lambda r: r["test"]["lsd_db"], ".2f"),
        line("active latent units (test)", lambda r: r["test"]["active_units"], "d"),
        line("KL total, nats (test)", lambda r: r["test"]["kl_total"], ".2f"),
        line(
            "diversity: recon pairwise / decoded-input pairwise",
            lambda r: r["identity"]["codec"]["diversity_ratio"],
        ),
        line(
            "keeps its note: nearest decoded input is its own",
            lambda r: r["identity"]["codec"]["nearest_is_own"],
        ),
        line(
            "median rank of own note (of 93)",
            lambda r: r["identity"]["codec"]["own_rank_median"],
            ".0f",
        ),
        line(
            "keeps its note, against the rendered waveforms",
            lambda r: r["identity"]["waveform"]["nearest_is_own"],
        ),
        line(
            "median rank of own note, against the rendered waveforms",
            lambda r: r["identity"]["waveform"]["own_rank_median"],
            ".0f",
        ),
        line(
            "keeps its instrument: nearest rendered note is of its instrument",
            lambda r: r["identity"]["waveform"]["nearest_same_instrument"],
        ),
        line(
            "same, by chance",
            lambda r: r["identity"]["waveform"]["same_instrument_chance"],
        ),
        line(
            "keeps its instrument, against the decoded inputs",
            lambda r: r["identity"]["codec"]["nearest_same_instrument"],
        ),
        line(
            "keeps its instrument by floored LSD, against the rendered waveforms",
            lambda r: r["identity"]["waveform"]["lsd_nearest_same_instrument"],
        ),
        line(
            "keeps its note by floored LSD, against the rendered waveforms",
            lambda r: r["identity"]["waveform"]["lsd_nearest_is_own"],
        ),
        line(
            "floored LSD: largest share with one real note as nearest",
            lambda r: r["identity"]["waveform"]["lsd_hub_share"],
        ),
        line(
            "TimGM6mb test: RMS% (own representation)",
            lambda r: r["timgm6mb"]["rms_percent"],
        ),
        line(
            "TimGM6mb test: MR-STFT vs the rendered waveform",
            lambda r: r["timgm6mb"]["identity"]["waveform"]["own_mrstft_mean"],
        ),
        line(
            "TimGM6mb test: keeps its note, against the rendered waveforms",
            lambda r: r["timgm6mb"]["identity"]["waveform"]["nearest_is_own"],
        ),
        line(
            "TimGM6mb test: keeps its instrument, against the rendered waveforms",
            lambda r: r["timgm6mb"]["identity"]["waveform"]["nearest_same_instrument"],
        ),
        line(
            "TimGM6mb test: keeps its instrument by floored LSD",
            lambda r: r["timgm6mb"]["identity"]["waveform"]["lsd_nearest_same_instrument"],
        ),
        line(
            "TimGM6mb test: diversity",
            lambda r: r["timgm6mb"]["identity"]["codec"]["diversity_ratio"],
        ),
        line(
            f"collapsed (inactive unit or diversity < {DIVERSITY_COLLAPSED})",
            lambda r: (
                ("yes" if _collapsed(r["test"], r["identity"]["codec"]) else "no")
                if r["test"]["kl_per_dim"] is not None
                else None
            ),
            "s",
        ),
    ]
    kl_lines = [
        f"- KL per dimension (nats, test) of {n}: {kl_cell(rows[n])}"
        for n in names
        if rows[n]["test"]["kl_per_dim"] is not None
    ]
    cmd = ".venv/bin/python benchmarks/wave_quality.py " + " ".join(sys.argv[1:])
    total = sum(times.values())
    stage_times = ", ".join(f"{k} {v:.0f}" for k, v in times.items())
    lines = [
        f"## Waveform path quality (benchmarks/wave_quality.py), {dt.date.today().isoformat()}",
        "",
        f"- Command: `{cmd}`",
        f"- Machine: {platform.machine()} 2-core CPU, no GPU; "
        f"torch {torch.__version__}, {max(1, int(args.cpus_per_trial))} thread(s), one trial at a time (Ray num_cpus=2, see the "
        f"note below); stages took {total:.0f} s in all ({stage_times}; a reused stage keeps "
        "its first time)",
        "- Data: built-in FluidR3 library (C3,C4,C5), codec defaults (2 s, 44.1 kHz, mu-law 8 "
        "waveform, 88,200 values), splits by GM program (train 927, validation 135, test 93)",
        f"- Outer: {args.outer_model} {json.dumps(_outer_config(args))}, {args.outer_epochs} epochs "
        f"(`run_study`, one trial; best epoch {outer.get('best_epoch')})",
        f"- VAE (`run_chain`, {args.vae_epochs} epochs): base {json.dumps(_vae_config(args))}; "
        f"variants: {'; '.join(f'{k} {json.dumps(REMEDIES[k])}' for k in tried[1:]) or 'none'}",
        f"- STFT path: {args.stft_run} (frame_ae + VAE 8 latents, quick preset), evaluated "
        f"again with Griffin-Lim {args.stft_gl_iters} iterations",
        *(
            [
                "- Generalisation (TimGM6mb rows): the test programs rendered from Debian's "
                "TimGM6mb SoundFont (no samples shared with FluidR3; "
                f"{_timgm_count(rows)} notes), encoded by each path's own codec"
            ]
            if args.timgm
            else []
        ),
        "",
        *table,
        "",
        *kl_lines,
        "",
        "RMS% is in each path's own representation (wave: mu-law waveform samples; STFT: mu-law "
        "magnitudes), so it is not comparable across columns; the MR-STFT distance "
        "(samplegen.dsp.metrics, FFT 512/1024/2048, 0 for identical audio) is. 'Evaluation's "
        "figure' is what `samplegen evaluate` reports: against the input decoded by the path's "
        "own codec (wave: inverse mu-law, which is the rendered waveform; STFT: Griffin-Lim of "
        "the encoded input with the same seeds, so the phase-recovery error is shared). "
        "'vs the rendered waveform' compares every column with one reference (the wave dataset's "
        "decoded test notes); for the STFT path it also counts the codec's -70 dB floor and "
        "Griffin-Lim's phase, which the log-magnitude term of the distance weighs heavily. "
        "Diversity: mean MR-STFT distance between the reconstructions of different test notes "
        "over the same between the decoded inputs (near 0: every input decodes to nearly the same "
        "sound). Keeps its note: the fraction of the 93 test reconstructions whose nearest "
        "decoded test input (MR-STFT) is the one it came from (chance 1/93 = 0.011); test "
        "instruments were never trained on. Keeps its instrument: the fraction whose nearest "
        "rendered test note (MR-STFT) is one of the same instrument (GM program: 3 pitches x 3 "
        "velocities), a note of any pitch or velocity; 'by chance' is that fraction for a "
        "nearest note drawn at random. 'By floored LSD': the same with the log-spectral distance "
        "of benchmarks/generate.py (FFT 2048, each spectrogram floored 80 dB below its own peak) "
        "instead of MR-STFT. Read those rows for identity: the MR-STFT distance's log term counts "
        "bins down to -140 dB, so near-silent bins decide its nearest notes (RESULTS.md, 'Does the "
        "waveform path keep its instrument? The distance decides').",
        "",
        "Ray runs with 2 logical CPUs and one trial at a time; training uses the thread count "
        "above.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
