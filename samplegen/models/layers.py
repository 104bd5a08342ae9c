"""Small building blocks shared by several architectures."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: tuple[str, ...] = ("none", "relu", "leaky_relu", "elu", "tanh", "silu")
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("none", "sigmoid", "clamp", "clamp_st")


def interpolate_layer_sizes(start: int, end: int, depth: int, ratio: float) -> list[int]:
    """Layer widths from `start` to `end` in `depth` steps, shaped by `ratio`.

    Width i (i = 0..depth) is int(start + (i / depth) ** ratio * (end - start)); a ratio below 1
    shrinks the first layers fastest. Example: (6300, 7, 4, 0.25) -> [6300, 1850, 1008, 443, 7].
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    sizes = [int(start + (i / depth) ** ratio * (end - start)) for i in range(depth + 1)]
    sizes[-1] = int(end)
    return sizes


def make_activation(name: str) -> nn.Module:
    """The module for an activation name in ACTIVATIONS ('none' is the identity)."""
    if name == "none":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    if name == "elu":
        return nn.ELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}")


class Clamp01(nn.Module):
    """Hard clamp to [0, 1] (keeps gradients inside the range, unlike a sigmoid's flat tails)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)


class StraightThroughClamp01(nn.Module):
    """Clamp to [0, 1] forward; backward, the gradient passes as if there were no clamp.

    A hard clamp's gradient is zero outside [0, 1]: a raw output below 0 whose target is above 0
    (a quiet bin the decoder undershoots) can never be pulled up, by training or by refining a
    code through the decoder. Straight through, the loss's gradient at the clamped value moves the
    raw output; where the target is 0 that gradient is 0, so nothing pushes those bins."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (x.clamp(0.0, 1.0) - x).detach()


def make_output_activation(name: str) -> nn.Module:
    """The module for an output activation name in OUTPUT_ACTIVATIONS."""
    if name == "none":
        return nn.Identity()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "clamp":
        return Clamp01()
    if name == "clamp_st":
        return StraightThroughClamp01()
    raise ValueError(f"unknown output activation {name!r}")


def mlp(
    sizes: Sequence[int], *, final_activation: bool = False, activation: str = "relu"
) -> nn.Sequential:
    """Linear layers through `sizes` with `activation` between them (and after the last if
    asked)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


def frame_stack(sizes: Sequence[int], context: int, activation: str) -> nn.Sequential:
    """Conv1d layers through `sizes` (channels), each seeing `context` frames (odd, same length
    out), with `activation` between them: a dense network shared by every frame."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Conv1d(sizes[i], sizes[i + 1], context, padding=context // 2))
        if i < len(sizes) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


def per_sample_sse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The original's loss unit: squared error summed over each sample, averaged over the batch."""
    return (pred - target).pow(2).flatten(1).sum(1).mean()
