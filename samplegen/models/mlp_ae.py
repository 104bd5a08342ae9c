"""The original's per-frame stepwise MLP auto-encoder over STFT frames.

Encoder, per frame t: [frame t-1, frame t, t/T] -> MLP (ReLU hidden) -> `hidden` values (tanh).
Decoder, per frame: [code t, decoded frame t-1, t/T] -> MLP -> frame t, autoregressively.
With `teacher_forcing`, training feeds the true previous frame instead (all frames at once, much
faster, at the cost of a train/inference mismatch); `decode` and eval mode are always autoregressive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samplegen.models.base import ModelOutput, SampleModel
from samplegen.models.layers import interpolate_layer_sizes, mlp
from samplegen.models.registry import ModelRejected, register


@dataclass(frozen=True)
class MLPAEHParams:
    """hidden: code values per frame; depth, ratio: MLP sizes via interpolate_layer_sizes;
    teacher_forcing: feed true previous frames to the decoder while training."""

    hidden: int = 35
    depth: int = 3
    ratio: float = 1.0
    teacher_forcing: bool = False

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"hidden must be at least 1, got {self.hidden}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.ratio <= 0:
            raise ValueError(f"ratio must be positive, got {self.ratio}")


def _positions(batch: int, frames: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.arange(frames, device=like.device, dtype=like.dtype) / frames
    return t.view(1, frames, 1).expand(batch, frames, 1)


@register(MLPAEHParams)
class MLPAE(SampleModel):
    """STFT (B, bins, frames) -> codes (B, hidden, frames) -> STFT (B, bins, frames)."""

    name = "mlp_ae"
    kind = "outer_stft"

    def __init__(self, hparams: MLPAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 2:
            raise ModelRejected(f"model mlp_ae: needs a (bins, frames) input, got {input_shape}")
        bins = self.input_shape[0]
        enc = interpolate_layer_sizes(2 * bins + 1, hparams.hidden, hparams.depth, hparams.ratio)
        dec = interpolate_layer_sizes(hparams.hidden + bins + 1, bins, hparams.depth, hparams.ratio)
        if any(s < 1 for s in enc + dec):
            raise ModelRejected(f"model mlp_ae: layer sizes {enc} / {dec} include an empty layer")
        self.encoder = nn.Sequential(mlp(enc), nn.Tanh())
        self.decoder = mlp(dec)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.hidden, self.input_shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.transpose(1, 2)  # (B, T, F)
        prev = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, :-1]], dim=1)
        pos = _positions(x.shape[0], frames.shape[1], x)
        return self.encoder(torch.cat([prev, frames, pos], dim=-1)).transpose(1, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        codes = z.transpose(1, 2)  # (B, T, hidden)
        batch, steps = codes.shape[:2]
        pos = _positions(batch, steps, codes)
        prev = codes.new_zeros(batch, self.input_shape[0])
        out = []
        for t in range(steps):
            prev = self.decoder(torch.cat([codes[:, t], prev, pos[:, t]], dim=-1))
            out.append(prev)
        return torch.stack(out, dim=2)

    def _decode_teacher_forced(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        codes, frames = z.transpose(1, 2), x.transpose(1, 2)
        prev = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, :-1]], dim=1)
        pos = _positions(x.shape[0], frames.shape[1], x)
        return self.decoder(torch.cat([codes, prev, pos], dim=-1)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        if self.training and self.hparams.teacher_forcing:
            return ModelOutput(recon=self._decode_teacher_forced(z, x), latent=z)
        return ModelOutput(recon=self.decode(z), latent=z)
