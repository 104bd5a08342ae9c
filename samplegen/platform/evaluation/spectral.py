"""Spectral and audio-domain figures of a split's reconstructions.

What is compared with what (also written into metrics.json under each section's ``compares``):

- magnitude: linear STFT magnitudes of the reconstruction against those of the input, both in the
  codec's units (peak 1, floor applied). STFT models: inverse mu-law of the model output and of
  the encoded input. Wave models: the STFT (codec settings) of the decoded reconstruction and of
  the decoded input.
- audio (STFT models): the reconstruction becomes audio by seeded Griffin-Lim; that audio is
  analysed again with the codec's STFT and compared with the input's magnitudes (spectral
  convergence, log-spectral distance): what a listener gets, phase recovery included. The
  reference audio is the encoded input decoded the same way (same seeds, same iterations), since
  datasets keep the encoding, not the waveform; the multi-resolution STFT distance compares the two
  audios. ``phase_recovery_only`` gives the same figures for the reference audio alone: the error
  Griffin-Lim adds even to a perfect magnitude.
- audio (wave models): the output is audio already (inverse mu-law, no Griffin-Lim); the
  multi-resolution STFT distance compares it with the decoded input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from samplegen.dsp.codec import decode_batch, encode_batch, magnitude
from samplegen.dsp.config import CodecConfig
from samplegen.dsp.metrics import (
    log_spectral_distance_db,
    multi_resolution_stft_distance,
    spectral_convergence_db,
)
from samplegen.platform.evaluation.jsonsafe import NullReasons

MAGNITUDE_COMPARES = {
    "stft": "linear magnitudes (inverse mu-law, peak 1, floor) of the model output vs the input",
    "wave": "codec STFT magnitudes (peak 1, floor) of the decoded output vs the decoded input",
}
AUDIO_COMPARES = {
    "stft": (
        "output -> Griffin-Lim audio -> codec STFT magnitudes vs the input's magnitudes; "
        "multi-resolution STFT distance of that audio vs the input decoded by the same "
        "Griffin-Lim (same seeds and iterations)"
    ),
    "wave": "multi-resolution STFT distance of the decoded output vs the decoded input",
}


def stats(values: np.ndarray) -> dict[str, float | None]:
    """Mean, median, min and max of per-sample values (None for an empty split)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"mean": None, "median": None, "min": None, "max": None}
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def _stft_codec(codec: CodecConfig) -> CodecConfig:
    return codec if codec.representation == "stft" else codec.replace(representation="stft")


def linear_magnitudes(
    encoded: np.ndarray, codec: CodecConfig, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Linear STFT magnitudes (N, bins, frames) of a batch of encoded samples of either codec."""
    if codec.representation == "stft":
        return magnitude(np.asarray(encoded, dtype=np.float32), codec)
    audio = decode_batch(np.asarray(encoded, dtype=np.float32), codec, device=device)
    return audio_magnitudes(audio, codec)


def audio_magnitudes(audio: np.ndarray, codec: CodecConfig) -> np.ndarray:
    """Codec-STFT linear magnitudes (peak 1, floor) of a batch of audio (N, samples)."""
    stft_codec = _stft_codec(codec)
    return magnitude(encode_batch(np.asarray(audio, dtype=np.float32), stft_codec), stft_codec)


def magnitude_section(
    recon: np.ndarray,
    x: np.ndarray,
    codec: CodecConfig,
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Spectral convergence and log-spectral distance (dB) of output vs input magnitudes."""
    sc, lsd = [], []
    for start in range(0, x.shape[0], batch_size):
        pred = linear_magnitudes(recon[start : start + batch_size], codec, device)
        true = linear_magnitudes(x[start : start + batch_size], codec, device)
        sc.append(np.atleast_1d(spectral_convergence_db(pred, true)))
        lsd.append(np.atleast_1d(log_spectral_distance_db(pred, true)))
    return {
        "compares": MAGNITUDE_COMPARES[codec.representation],
        "spectral_convergence_db": stats(np.concatenate(sc) if sc else np.zeros(0)),
        "log_spectral_distance_db": stats(np.concatenate(lsd) if lsd else np.zeros(0)),
    }


def audio_section(
    recon: np.ndarray,
    x: np.ndarray,
    codec: CodecConfig,
    *,
    griffin_lim_iters: int,
    seed: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    nulls: NullReasons | None = None,
    path: str = "spectral.audio",
) -> dict[str, Any]:
    """Audio-domain figures (see the module docstring); deterministic for a given `seed`.

    Sample i is decoded with Griffin-Lim seed ``seed + i`` whatever the batch size. Figures that do
    not apply to wave models are None, with the reason recorded in `nulls` under `path`.
    """
    stft = codec.representation == "stft"
    mr, sc, lsd, base_sc, base_lsd = [], [], [], [], []
    for start in range(0, x.shape[0], batch_size):
        rb = np.asarray(recon[start : start + batch_size], dtype=np.float32)
        xb = np.asarray(x[start : start + batch_size], dtype=np.float32)
        y_pred, y_ref = (
            decode_batch(
                b,
                codec,
                batch_size=batch_size,
                n_iter=griffin_lim_iters,
                seed=seed + start,
                device=device,
            )
            for b in (rb, xb)
        )
        mr.append(np.atleast_1d(multi_resolution_stft_distance(y_pred, y_ref)))
        if stft:
            true = magnitude(xb, codec)
            pred_again = audio_magnitudes(y_pred, codec)
            ref_again = audio_magnitudes(y_ref, codec)
            sc.append(np.atleast_1d(spectral_convergence_db(pred_again, true)))
            lsd.append(np.atleast_1d(log_spectral_distance_db(pred_again, true)))
            base_sc.append(np.atleast_1d(spectral_convergence_db(ref_again, true)))
            base_lsd.append(np.atleast_1d(log_spectral_distance_db(ref_again, true)))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    section: dict[str, Any] = {
        "compares": AUDIO_COMPARES[codec.representation],
        "griffin_lim": stft,
        "griffin_lim_iters": griffin_lim_iters if stft else 0,
        "seed": seed,
        "multi_resolution_stft_distance": stats(cat(mr)),
    }
    if stft:
        section["spectral_convergence_db"] = stats(cat(sc))
        section["log_spectral_distance_db"] = stats(cat(lsd))
        section["phase_recovery_only"] = {
            "spectral_convergence_db": stats(cat(base_sc)),
            "log_spectral_distance_db": stats(cat(base_lsd)),
        }
        return section
    reason = (
        "wave model: the output is audio, no Griffin-Lim; its magnitudes are in spectral.magnitude"
    )
    for key in ("spectral_convergence_db", "log_spectral_distance_db", "phase_recovery_only"):
        section[key] = None
        if nulls is not None:
            nulls.add(f"{path}.{key}", reason)
    return section
