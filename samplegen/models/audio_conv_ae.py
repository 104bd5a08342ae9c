"""The addendum's waveform auto-encoder: strided Conv1d layers, then each channel divided by its
signed soft amplitude (kept as one extra latent value per channel), mirrored ConvTranspose1d back.

Kernel of layer i = max(1, round(kernel_size * ratio ** i)), stride = max(1, int(kernel *
stride_ratio)); the defaults give the addendum's 40/16, 28/11, 20/8 (134,570 parameters on
88,200 samples). The decoder's output is zero-padded (or cropped) to the input length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samplegen.dsp.metrics import multi_resolution_stft_distance
from samplegen.models.base import LossOutput, ModelOutput, SampleModel
from samplegen.models.layers import ACTIVATIONS, make_activation
from samplegen.models.registry import ModelRejected, register


@dataclass(frozen=True)
class AudioConvAEHParams:
    """depth: conv layers; channels: K; kernel_size: first kernel; ratio: kernel shrink per layer;
    stride_ratio: stride / kernel; activation: between layers (none = the original);
    temperature: softness of the soft max/min amplitude; eps: smallest amplitude magnitude (so a
    silent channel cannot divide by zero); spectral_weight: weight of a multi-resolution STFT
    distance (samplegen.dsp.metrics) added to the per-sample SSE. 0 is the original's SSE alone. SSE on
    waveforms rewards only phase-exact output, so a small model learns to output a near-silent
    average; the spectral term rewards the right spectrum in any phase."""

    depth: int = 3
    channels: int = 37
    kernel_size: int = 40
    ratio: float = 0.7
    stride_ratio: float = 0.4
    activation: str = "none"
    temperature: float = 0.1
    eps: float = 1e-4
    spectral_weight: float = 0.0

    def __post_init__(self) -> None:
        for key in ("depth", "channels", "kernel_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if not self.spectral_weight >= 0:
            raise ValueError(f"spectral_weight must be >= 0, got {self.spectral_weight}")
        for key in ("ratio", "stride_ratio", "temperature", "eps"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")


class NormalizeWithAmplitudes(nn.Module):
    """(B, K, L) -> (B, K, L + 1): each channel divided by its signed soft amplitude a, then a.

    a is the soft max sum(softmax(x / T) * x) or the soft min sum(softmax(-x / T) * x), whichever
    is larger in magnitude, pushed away from zero to at least eps in magnitude.
    """

    def __init__(self, temperature: float, eps: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        soft_max = (torch.softmax(x / self.temperature, dim=-1) * x).sum(-1, keepdim=True)
        soft_min = (torch.softmax(-x / self.temperature, dim=-1) * x).sum(-1, keepdim=True)
        a = torch.where(soft_max.abs() >= soft_min.abs(), soft_max, soft_min)
        a = torch.where(a >= 0, a.clamp(min=self.eps), a.clamp(max=-self.eps))
        return torch.cat([x / a, a], dim=-1)


def denormalize(y: torch.Tensor) -> torch.Tensor:
    """Inverse of NormalizeWithAmplitudes: (B, K, L + 1) -> (B, K, L)."""
    return y[..., :-1] * y[..., -1:]


@register(AudioConvAEHParams)
class AudioConvAE(SampleModel):
    """Wave (B, samples) -> (B, K, L + 1) -> wave (B, samples)."""

    name = "audio_conv_ae"
    kind = "outer_wave"

    def __init__(self, hparams: AudioConvAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 1:
            raise ModelRejected(
                f"model audio_conv_ae: needs a (samples,) input, got {self.input_shape}"
            )
        length = self.input_shape[0]
        self.plan: list[tuple[int, int]] = []
        for i in range(hparams.depth):
            k = max(1, round(hparams.kernel_size * hparams.ratio**i))
            s = max(1, int(k * hparams.stride_ratio + 1e-9))
            if k > length:
                raise ModelRejected(
                    f"model audio_conv_ae: layer {i} kernel {k} is longer than its input "
                    f"({length} values); use fewer layers or smaller kernels"
                )
            length = (length - k) // s + 1
            self.plan.append((k, s))
        self.length = length
        c = hparams.channels
        self.encoder = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else c, c, k, s) for i, (k, s) in enumerate(self.plan)
        )
        self.decoder = nn.ModuleList(
            nn.ConvTranspose1d(c, 1 if i == 0 else c, k, s)
            for i, (k, s) in reversed(list(enumerate(self.plan)))
        )
        self.act = make_activation(hparams.activation)
        self.normalize = NormalizeWithAmplitudes(hparams.temperature, hparams.eps)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.channels, self.length + 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for i, conv in enumerate(self.encoder):
            h = conv(h)
            if i < len(self.encoder) - 1:
                h = self.act(h)
        return self.normalize(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = denormalize(z)
        for i, deconv in enumerate(self.decoder):
            h = deconv(h)
            if i < len(self.decoder) - 1:
                h = self.act(h)
        h = h.squeeze(1)
        n = self.input_shape[0]
        if h.shape[-1] >= n:
            return h[..., :n]
        return F.pad(h, (0, n - h.shape[-1]))

    def loss(self, x: torch.Tensor, out: ModelOutput, epoch: int | None = None) -> LossOutput:
        """Per-sample SSE, plus spectral_weight x the multi-resolution STFT distance (batch mean).

        `recon` stays the SSE, so RMS figures compare with SSE-only models.
        """
        base = super().loss(x, out, epoch)
        if not self.hparams.spectral_weight:
            return base
        # float32: torch.stft has no bf16 kernels, and the log magnitudes need the range.
        spectral = multi_resolution_stft_distance(out.recon.float(), x.float()).mean()
        return LossOutput(
            total=base.total + self.hparams.spectral_weight * spectral,
            recon=base.recon,
            metrics={**base.metrics, "spectral": float(spectral.detach())},
        )
