"""The naive auto-encoder of the original's addendum: fully connected, latent bounded to [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samplegen.models.base import InnerModel
from samplegen.models.layers import interpolate_layer_sizes, mlp
from samplegen.models.registry import ModelRejected, register


@dataclass(frozen=True)
class BoundedAEHParams:
    """latent: latent dimensions; depth, ratio: sizes via interpolate_layer_sizes(D, latent,
    depth, ratio)."""

    latent: int = 7
    depth: int = 4
    ratio: float = 0.25

    def __post_init__(self) -> None:
        if self.latent < 1:
            raise ValueError(f"latent must be at least 1, got {self.latent}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.ratio <= 0:
            raise ValueError(f"ratio must be positive, got {self.ratio}")


@register(BoundedAEHParams)
class BoundedAE(InnerModel):
    """(B, D) -> tanh latent (B, latent) in [-1, 1] -> (B, D)."""

    name = "bounded_ae"

    def __init__(self, hparams: BoundedAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 1:
            raise ModelRejected(
                f"model bounded_ae: needs a flat (D,) input, got {self.input_shape}"
            )
        sizes = interpolate_layer_sizes(
            self.input_shape[0], hparams.latent, hparams.depth, hparams.ratio
        )
        if any(s < 1 for s in sizes):
            raise ModelRejected(f"model bounded_ae: layer sizes {sizes} include an empty layer")
        self.sizes = sizes
        self.encoder = nn.Sequential(mlp(sizes), nn.Tanh())
        self.decoder = mlp(sizes[::-1])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.latent,)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def sample_prior(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform over the bounded box [-1, 1]^latent, scaled by `temperature` (no learned prior)."""
        device = generator.device if generator is not None else self._device()
        u = torch.rand(n, self.hparams.latent, generator=generator, device=device)
        return temperature * (2.0 * u - 1.0)
