"""A waveform auto-encoder whose decoder is a harmonic-plus-noise synthesiser (after DDSP, Engel et
al. 2020), trained on a multi-resolution STFT distance.

Why: a decoder that must give back the waveform sample by sample has to know every partial's
phase, which no small code of an unseen instrument can hold; under a waveform loss such models
learn a near-silent average (benchmarks/RESULTS.md, "Waveform path quality"). Here the code holds
only what is heard: per frame, a few values that the decoder turns into the amplitude of each
harmonic of the note's fundamental and the gain of each band of a filtered noise. Phases are fixed
by the synthesiser, so the code is as learnable as a spectrogram's, and an inner VAE can sit on it.

Code (frame_latent + 1, frames): row 0 is the note's pitch, log2(f0 / 440 Hz), the same in every
frame, measured from the input by samplegen.dsp.f0 (not learned: fundamentals found by gradient
descent through oscillators get stuck in octave and fifth errors); rows 1.. are a per-frame
network's code of the log-magnitude STFT. The decoder reads the pitch as the mean of row 0 over
frames. Frames are the STFT's (centred, hop `hop`), so frame f sits at sample f * hop.

The model works in the representation's own domain (mu-law waveform): mu-law is a memoryless
curve, which keeps a periodic note periodic at the same fundamental.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samplegen.dsp.f0 import estimate_f0
from samplegen.dsp.metrics import multi_resolution_stft_distance
from samplegen.models.base import LossOutput, ModelOutput, SampleModel
from samplegen.models.layers import ACTIVATIONS, frame_stack
from samplegen.models.registry import ModelRejected, register

_A4_HZ = 440.0
_LOG_FLOOR = 1e-4
_NOISE_SEED = 0


@dataclass(frozen=True)
class HarmonicAEHParams:
    """frame_latent: code values per frame (plus the pitch row); hidden, depth, context, activation:
    the per-frame networks (as frame_ae's); harmonics: oscillators at k f0 (those at or above half
    the sample rate are silent); noise_bands: gains of the filtered noise, spread evenly over the
    spectrum; n_fft, hop: the analysis and noise-filter frames; sample_rate: the codec's, used
    to turn the measured pitch into oscillator frequencies; f0_min, f0_max: the pitch search
    range in Hz; spectral_weight: scale of the training loss (the multi-resolution STFT distance
    of samplegen.dsp.metrics)."""

    frame_latent: int = 32
    hidden: int = 256
    depth: int = 2
    context: int = 3
    activation: str = "elu"
    harmonics: int = 64
    noise_bands: int = 64
    n_fft: int = 2048
    hop: int = 1024
    sample_rate: int = 44100
    f0_min: float = 40.0
    f0_max: float = 1200.0
    spectral_weight: float = 1.0

    def __post_init__(self) -> None:
        for key in ("frame_latent", "hidden", "depth", "harmonics", "noise_bands", "hop"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.context < 1 or self.context % 2 == 0:
            raise ValueError(f"context must be a positive odd number, got {self.context}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.n_fft < 2 or self.hop > self.n_fft:
            raise ValueError(f"need 2 <= n_fft and hop <= n_fft, got {self.n_fft} and {self.hop}")
        if not 0 < self.f0_min < self.f0_max:
            raise ValueError(f"need 0 < f0_min < f0_max, got {self.f0_min} and {self.f0_max}")
        if self.f0_max * 2 > self.sample_rate:
            raise ValueError(
                f"f0_max {self.f0_max} Hz must be below half the sample rate {self.sample_rate}"
            )
        if not self.spectral_weight > 0:
            raise ValueError(f"spectral_weight must be positive, got {self.spectral_weight}")


def exp_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """DDSP's positive amplitude map 2 sigmoid(x)^ln(10) + 1e-7: a gain in (0, 2] whose log moves
    smoothly with x, so small and large amplitudes train at similar rates."""
    return 2.0 * torch.sigmoid(x).pow(math.log(10.0)) + 1e-7


def harmonic_synth(
    amps: torch.Tensor, f0_norm: torch.Tensor, hop: int, length: int
) -> torch.Tensor:
    """Sum of sines at k f0 (k = 1..K) with zero start phase: (B, length).

    amps (B, K, frames): amplitude of harmonic k at frame f (sample f * hop), linearly
    interpolated in between; f0_norm (B,): the fundamental in cycles per sample, constant over
    the note. Harmonics at or above half the sample rate are dropped (they would alias).
    """
    b, k, frames = amps.shape
    dtype = amps.dtype
    harmonic = torch.arange(1, k + 1, dtype=torch.float64, device=amps.device)
    per_sample = harmonic[None, :] * f0_norm.double()[:, None]  # (B, K) cycles per sample
    amps = amps * (per_sample < 0.5).to(dtype)[:, :, None]
    # One more frame than needed so that every sample has a right-hand neighbour.
    amps = torch.cat([amps, amps[:, :, -1:]], dim=2)
    segments = frames
    # Sample s * hop + j of harmonic k: sin(A + B) with A the phase at the segment's start and B
    # the phase advance within it, so the sum over harmonics is two small matrix products instead
    # of a sine per harmonic and sample. Phases are reduced to cycles in float64 first.
    start = torch.arange(segments, dtype=torch.float64, device=amps.device) * hop
    within = torch.arange(hop, dtype=torch.float64, device=amps.device)
    a = 2.0 * math.pi * torch.frac(per_sample[:, :, None] * start)  # (B, K, S)
    c = 2.0 * math.pi * torch.frac(per_sample[:, :, None] * within)  # (B, K, hop)
    sin_a, cos_a = torch.sin(a).to(dtype), torch.cos(a).to(dtype)
    sin_c, cos_c = torch.sin(c).to(dtype), torch.cos(c).to(dtype)

    def weighted(w: torch.Tensor) -> torch.Tensor:
        # sum_k w[k, s] sin(a[k, s] + c[k, j]) -> (B, S, hop)
        return (w * sin_a).transpose(1, 2) @ cos_c + (w * cos_a).transpose(1, 2) @ sin_c

    alpha = torch.arange(hop, dtype=dtype, device=amps.device) / hop
    out = (1.0 - alpha) * weighted(amps[:, :, :-1]) + alpha * weighted(amps[:, :, 1:])
    return out.reshape(b, segments * hop)[:, :length]


@register(HarmonicAEHParams)
class HarmonicAE(SampleModel):
    """Wave (B, samples) -> code (B, frame_latent + 1, frames) -> wave (B, samples)."""

    name = "harmonic_ae"
    kind = "outer_wave"
    onnx_obstacle = (
        "its decoder filters noise through an inverse STFT, and its encoder takes a complex "
        "STFT: ONNX has no operator for either"
    )
    # Buffers (registered in __init__), declared for the type checker.
    window: torch.Tensor
    noise_spec: torch.Tensor

    def __init__(self, hparams: HarmonicAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 1:
            raise ModelRejected(
                f"model harmonic_ae: needs a (samples,) input, got {self.input_shape}"
            )
        length = self.input_shape[0]
        if length < hparams.n_fft:
            raise ModelRejected(
                f"model harmonic_ae: n_fft {hparams.n_fft} is longer than the input "
                f"({length} samples)"
            )
        self.frames = length // hparams.hop + 1
        bins = hparams.n_fft // 2 + 1
        hidden = [hparams.hidden] * (hparams.depth - 1)
        self.encoder = frame_stack(
            [bins, *hidden, hparams.frame_latent], hparams.context, hparams.activation
        )
        controls = hparams.harmonics + hparams.noise_bands
        self.decoder = frame_stack(
            [hparams.frame_latent + 1, *hidden, controls], hparams.context, hparams.activation
        )
        # Start quiet: a loud random comb of 64 harmonics takes many steps to undo.
        last = self.decoder[-1]
        assert isinstance(last, nn.Conv1d) and last.bias is not None
        nn.init.constant_(last.bias, -3.0)
        self.register_buffer("window", torch.hann_window(hparams.n_fft), persistent=False)
        # A fixed noise source, regenerated (not stored) so that decoding is deterministic.
        g = torch.Generator().manual_seed(_NOISE_SEED)
        noise = torch.rand(length, generator=g) * 2.0 - 1.0
        spec = torch.stft(
            noise,
            hparams.n_fft,
            hop_length=hparams.hop,
            window=torch.hann_window(hparams.n_fft),
            center=True,
            return_complex=True,
        )
        self.register_buffer("noise_spec", spec / spec.abs().mean(), persistent=False)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.frame_latent + 1, self.frames)

    def _spectrum(self, x: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        window = self.window.to(x.dtype)
        spec = torch.stft(
            x, hp.n_fft, hop_length=hp.hop, window=window, center=True, return_complex=True
        )
        return spec.abs()

    def pitch(self, x: torch.Tensor) -> torch.Tensor:
        """log2(f0 / 440 Hz) of each input note (B,), as the code's row 0 holds it."""
        hp = self.hparams
        f0 = estimate_f0(x.detach(), hp.sample_rate, hp.f0_min, hp.f0_max)
        return torch.log2(f0 / _A4_HZ).to(x.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(torch.log(self._spectrum(x) + _LOG_FLOOR))
        row = self.pitch(x)[:, None, None].expand(-1, 1, code.shape[-1])
        return torch.cat([row, code], dim=1)

    def controls(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(harmonic amplitudes (B, K, frames), noise band gains (B, M, frames), f0 in Hz (B,))."""
        hp = self.hparams
        f0 = _A4_HZ * torch.exp2(z[:, 0].mean(dim=-1))
        out = exp_sigmoid(self.decoder(z))
        return out[:, : hp.harmonics], out[:, hp.harmonics :], f0

    def _noise(self, gains: torch.Tensor, length: int) -> torch.Tensor:
        hp = self.hparams
        bins = hp.n_fft // 2 + 1
        # Band gains -> per-bin filter, bands spread evenly from 0 Hz to half the sample rate.
        per_bin = F.interpolate(gains.transpose(1, 2), size=bins, mode="linear", align_corners=True)
        spec = self.noise_spec * per_bin.transpose(1, 2)
        window = self.window.to(gains.dtype)
        return torch.istft(
            spec, hp.n_fft, hop_length=hp.hop, window=window, center=True, length=length
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        amps, gains, f0 = self.controls(z)
        length = self.input_shape[0]
        f0_norm = (f0.float() / self.hparams.sample_rate).detach()
        # Oscillators in float32 also under mixed precision: bf16 sines hold three digits.
        with torch.autocast(z.device.type, enabled=False):
            harmonic = harmonic_synth(amps.float(), f0_norm, self.hparams.hop, length)
            return harmonic + self._noise(gains.float(), length)

    def loss(self, x: torch.Tensor, out: ModelOutput, epoch: int | None = None) -> LossOutput:
        """spectral_weight x the multi-resolution STFT distance (batch mean); `recon` stays the
        per-sample SSE so that RMS figures compare with the other waveform models."""
        base = super().loss(x, out, epoch)
        # float32: torch.stft has no bf16 kernels, and the log magnitudes need the range.
        spectral = multi_resolution_stft_distance(out.recon.float(), x.float()).mean()
        return LossOutput(
            total=self.hparams.spectral_weight * spectral,
            recon=base.recon,
            metrics={**base.metrics, "spectral": float(spectral.detach())},
        )
