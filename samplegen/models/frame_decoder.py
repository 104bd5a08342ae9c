"""A decoder shared by every frame: one MLP maps (latent code, frame position) to that frame.

An inner model's output is an outer frame code: `values` numbers for each of `frames` frames,
stored value-major (index = value * frames + frame, the layout of frame_ae's (values, frames)
latent, flattened). A plain MLP decoder owns separate weights for every one of those numbers. This
one owns the weights of one frame and tells it where the frame sits in the note by Fourier
features of its position, so what it learns about an envelope at one time serves every other
time. On the quick run's encodings it lowered the VAE's validation error and its error on
instruments never trained on (benchmarks/RESULTS.md, "A decoder shared by every frame").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from samplegen.models.layers import mlp

# Sine and cosine of the frame position at 1..16 half-turns across the note: enough to place a
# frame among ~100 (the finest wave is 8 frames long at 87 frames) without adding width. The
# default of VAEHParams.time_frequencies.
TIME_FREQUENCIES = 16


def time_features(frames: int, count: int = TIME_FREQUENCIES) -> torch.Tensor:
    """(frames, 2 * count) sines and cosines of each frame's position in [0, 1], at 1..count
    half-turns across the note."""
    pos = torch.linspace(0.0, 1.0, frames)[:, None]
    angle = pos * torch.arange(1, count + 1, dtype=torch.float32)[None, :] * math.pi
    return torch.cat([angle.sin(), angle.cos()], 1)


class FrameDecoder(nn.Module):
    """(B, latent) -> (B, values * frames), value-major; `depth` hidden layers of `hidden` with
    `activation` (a name in samplegen.models.layers.ACTIVATIONS), the frame's position given by
    `time_frequencies` sine/cosine pairs."""

    time: torch.Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        latent: int,
        values: int,
        frames: int,
        hidden: int,
        depth: int,
        activation: str = "relu",
        time_frequencies: int = TIME_FREQUENCIES,
    ) -> None:
        super().__init__()
        self.values, self.frames = values, frames
        self.register_buffer("time", time_features(frames, time_frequencies), persistent=False)
        self.net = mlp(
            [latent + 2 * time_frequencies] + [hidden] * depth + [values], activation=activation
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        per_frame = torch.cat(
            [
                z[:, None, :].expand(b, self.frames, z.shape[1]),
                self.time[None].expand(b, -1, -1).to(z.dtype),
            ],
            2,
        )
        # (B, frames, values) -> (B, values, frames): the outer code's value-major layout.
        return self.net(per_frame).transpose(1, 2).reshape(b, self.values * self.frames)
