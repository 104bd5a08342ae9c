"""The original's 2-D convolutional STFT auto-encoder, with optional non-linearities and full output.

Layer rules (reference study, section 2): kernel per axis = min(ks, max(size // 4, 1)); layer 0
stride 1, later layers stride max(2, k // 3) per axis, or 1 once the axis is small (its kernel has
shrunk to 1, where a stride would skip values); ks halves after each layer (min 2); channels
1 -> K -> K ...; no padding. Unlike the original, an axis whose length a strided layer would not
cover exactly is zero-padded at its end first, so no input bin or frame is dropped, and the
mirrored decoder (ConvTranspose2d) restores the padded shape, which is cropped back to the input's:
every one of the 1025 bins and all frames depend on the latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samplegen.models.base import SampleModel
from samplegen.models.layers import (
    ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
    make_activation,
    make_output_activation,
)
from samplegen.models.registry import ModelRejected, register


@dataclass(frozen=True)
class Conv2dAEHParams:
    """layers: conv layers; kernels: channels K; kernel_size: first kernel size (halves per layer);
    activation: between layers (none = the original's linear stack); output_activation: none,
    sigmoid or clamp (to [0, 1])."""

    layers: int = 5
    kernels: int = 20
    kernel_size: int = 4
    activation: str = "none"
    output_activation: str = "none"

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"layers must be at least 1, got {self.layers}")
        if self.kernels < 1:
            raise ValueError(f"kernels must be at least 1, got {self.kernels}")
        if self.kernel_size < 1:
            raise ValueError(f"kernel_size must be at least 1, got {self.kernel_size}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation {self.output_activation!r} is not one of {OUTPUT_ACTIVATIONS}"
            )


@dataclass(frozen=True)
class _Layer:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]  # zeros appended at the end of each axis before the conv
    size_in: tuple[int, int]  # after padding
    size_out: tuple[int, int]


def plan_layers(hp: Conv2dAEHParams, shape: tuple[int, int]) -> list[_Layer]:
    """The encoder's layer geometry for an input (bins, frames); ModelRejected if impossible."""
    plan: list[_Layer] = []
    size = shape
    ks = hp.kernel_size
    for i in range(hp.layers):
        kernel = tuple(min(ks, max(n // 4, 1)) for n in size)
        stride = (1, 1) if i == 0 else tuple(1 if k == 1 else max(2, k // 3) for k in kernel)
        pad = tuple((s - (n - k) % s) % s for n, k, s in zip(size, kernel, stride, strict=True))
        padded = tuple(n + p for n, p in zip(size, pad, strict=True))
        out = tuple((n - k) // s + 1 for n, k, s in zip(padded, kernel, stride, strict=True))
        if any(o < 1 for o in out):
            raise ModelRejected(
                f"model conv2d_ae: layer {i} would map {size} to {out}; use fewer layers"
            )
        plan.append(_Layer(kernel, stride, pad, padded, out))  # type: ignore[arg-type]
        size = out  # type: ignore[assignment]
        ks = max(ks // 2, 2)
    return plan


@register(Conv2dAEHParams)
class Conv2dAE(SampleModel):
    """STFT (B, bins, frames) -> latent (B, K, f, t) -> STFT of the same shape."""

    name = "conv2d_ae"
    kind = "outer_stft"

    def __init__(self, hparams: Conv2dAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 2:
            raise ModelRejected(
                f"model conv2d_ae: needs a (bins, frames) input, got {self.input_shape}"
            )
        self.plan = plan_layers(hparams, self.input_shape)
        k = hparams.kernels
        n = len(self.plan)
        self.encoder = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else k, k, layer.kernel, layer.stride)
            for i, layer in enumerate(self.plan)
        )
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(k, 1 if i == 0 else k, layer.kernel, layer.stride)
            for i, layer in reversed(list(enumerate(self.plan)))
        )
        self.act = make_activation(hparams.activation)
        self.out_act = make_output_activation(hparams.output_activation)
        self._n = n

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.kernels, *self.plan[-1].size_out)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for i, (conv, layer) in enumerate(zip(self.encoder, self.plan, strict=True)):
            if any(layer.pad):
                h = F.pad(h, (0, layer.pad[1], 0, layer.pad[0]))
            h = conv(h)
            if i < self._n - 1:
                h = self.act(h)
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for j, (deconv, layer) in enumerate(zip(self.decoder, reversed(self.plan), strict=True)):
            h = deconv(h)
            # Crop the zeros the encoder appended before this layer.
            h = h[..., : layer.size_in[0] - layer.pad[0], : layer.size_in[1] - layer.pad[1]]
            if j < self._n - 1:
                h = self.act(h)
        return self.out_act(h.squeeze(1))
