"""A per-frame spectral auto-encoder: each STFT frame (with a little temporal context) is coded
into a few values by a small network shared across frames.

Why: the original's 2-D convolutions spend most of their compute at full resolution and see only
a few neighbouring bins, while a note's spectrum is shaped by harmonics spread over all 1025 bins.
A dense map over the whole frame sees every harmonic at once and runs as a few matrix products
(Conv1d over time with the bins as channels), which trains tens of times faster on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from samplegen.models.base import SampleModel
from samplegen.models.layers import (
    ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
    frame_stack,
    make_output_activation,
)
from samplegen.models.registry import ModelRejected, register


@dataclass(frozen=True)
class FrameAEHParams:
    """frame_latent: values per frame; hidden: width of the hidden layers (depth - 1 of them);
    context: frames each layer sees (odd; 1 = frames coded independently); activation between
    layers; output_activation: none, sigmoid, clamp (to [0, 1]) or clamp_st (the
    same clamp, its gradient passed straight through)."""

    frame_latent: int = 32
    hidden: int = 256
    depth: int = 2
    context: int = 3
    activation: str = "elu"
    output_activation: str = "clamp"

    def __post_init__(self) -> None:
        if self.frame_latent < 1:
            raise ValueError(f"frame_latent must be at least 1, got {self.frame_latent}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be at least 1, got {self.hidden}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.context < 1 or self.context % 2 == 0:
            raise ValueError(f"context must be a positive odd number, got {self.context}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation {self.output_activation!r} is not one of {OUTPUT_ACTIVATIONS}"
            )


@register(FrameAEHParams)
class FrameAE(SampleModel):
    """STFT (B, bins, frames) -> latent (B, frame_latent, frames) -> STFT of the same shape."""

    name = "frame_ae"
    kind = "outer_stft"

    def __init__(self, hparams: FrameAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 2:
            raise ModelRejected(
                f"model frame_ae: needs a (bins, frames) input, got {self.input_shape}"
            )
        bins, frames = self.input_shape
        if hparams.frame_latent >= bins:
            raise ModelRejected(
                f"model frame_ae: frame_latent {hparams.frame_latent} must be below the "
                f"{bins} bins of a frame (no compression otherwise)"
            )
        sizes = [bins] + [hparams.hidden] * (hparams.depth - 1) + [hparams.frame_latent]
        self.encoder = frame_stack(sizes, hparams.context, hparams.activation)
        self.decoder = frame_stack(sizes[::-1], hparams.context, hparams.activation)
        self.out_act = make_output_activation(hparams.output_activation)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.frame_latent, self.input_shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.decoder(z))
