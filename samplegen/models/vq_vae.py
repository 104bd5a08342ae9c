"""Vector-quantised auto-encoder (van den Oord et al. 2017) on flat vectors.

The encoder maps x to `n_latents` vectors of `code_dim`; each is replaced by its nearest codebook
entry, with the straight-through estimator carrying gradients past the quantisation. Loss =
SSE + ||sg(z_e) - e||^2 + commitment * ||z_e - sg(e)||^2 (per-sample sums, batch mean).
Dead codes: a code not chosen for `dead_after` training steps is re-initialised to a random
encoder output of the current batch, so the codebook keeps being used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from samplegen.models.base import (
    ACTIVE_UNIT_THRESHOLD,
    InnerModel,
    LatentStats,
    LossOutput,
    ModelOutput,
)
from samplegen.models.layers import interpolate_layer_sizes, mlp, per_sample_sse
from samplegen.models.registry import ModelRejected, register

# Decay of the running code-usage counts that drive sampling from the prior.
_USAGE_DECAY = 0.99


@dataclass(frozen=True)
class VQVAEHParams:
    """n_latents: code positions per sample; code_dim: width of a code; n_codes: codebook size;
    depth, ratio: encoder sizes via interpolate_layer_sizes(D, n_latents * code_dim, depth, ratio);
    commitment: weight of the commitment term; dead_after: training steps without use before a
    code is re-initialised (0 = never)."""

    n_latents: int = 8
    code_dim: int = 8
    n_codes: int = 64
    depth: int = 3
    ratio: float = 0.25
    commitment: float = 0.25
    dead_after: int = 100

    def __post_init__(self) -> None:
        for key in ("n_latents", "code_dim", "n_codes", "depth"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.ratio <= 0:
            raise ValueError(f"ratio must be positive, got {self.ratio}")
        if self.commitment < 0:
            raise ValueError(f"commitment must be >= 0, got {self.commitment}")
        if self.dead_after < 0:
            raise ValueError(f"dead_after must be >= 0, got {self.dead_after}")


def perplexity(codes: torch.Tensor, n_codes: int) -> float:
    """exp(entropy) of the code histogram: 1 = one code used, n_codes = all used evenly."""
    counts = torch.bincount(codes.flatten(), minlength=n_codes).float()
    p = counts / counts.sum().clamp(min=1.0)
    entropy = -(p * p.clamp(min=1e-12).log()).sum()
    return float(entropy.exp())


@register(VQVAEHParams)
class VQVAE(InnerModel):
    """(B, D) -> quantised (B, n_latents, code_dim) -> (B, D)."""

    name = "vq_vae"
    # Codes are codebook entries: no Gaussian is fitted to them (models.code_distribution).
    discrete_latent = True
    # Buffers (registered in __init__), declared for the type checker.
    idle_steps: torch.Tensor
    usage: torch.Tensor

    def __init__(self, hparams: VQVAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 1:
            raise ModelRejected(f"model vq_vae: needs a flat (D,) input, got {self.input_shape}")
        width = hparams.n_latents * hparams.code_dim
        sizes = interpolate_layer_sizes(self.input_shape[0], width, hparams.depth, hparams.ratio)
        if any(s < 1 for s in sizes):
            raise ModelRejected(f"model vq_vae: layer sizes {sizes} include an empty layer")
        self.sizes = sizes
        self.encoder = mlp(sizes)
        self.decoder = mlp(sizes[::-1])
        bound = 1.0 / hparams.n_codes
        self.codebook = nn.Parameter(
            torch.empty(hparams.n_codes, hparams.code_dim).uniform_(-bound, bound)
        )
        self.register_buffer("idle_steps", torch.zeros(hparams.n_codes, dtype=torch.long))
        self.register_buffer("usage", torch.zeros(hparams.n_codes))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.n_latents, self.hparams.code_dim)

    def _encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).view(-1, self.hparams.n_latents, self.hparams.code_dim)

    def nearest_codes(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry for each vector of z_e (..., code_dim)."""
        with torch.no_grad():
            flat = z_e.reshape(-1, self.hparams.code_dim)
            cb = self.codebook
            dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.t() + cb.pow(2).sum(1)
            return dist.argmin(1).view(z_e.shape[:-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.codebook[self.nearest_codes(self._encode_raw(x))]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.flatten(1))

    @torch.no_grad()
    def _revive_dead_codes(self, z_e: torch.Tensor) -> None:
        dead = (self.idle_steps >= self.hparams.dead_after).nonzero().flatten()
        if dead.numel() == 0:
            return
        flat = z_e.reshape(-1, self.hparams.code_dim)
        rows = torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)
        self.codebook.data[dead] = flat[rows]
        self.idle_steps[dead] = 0

    @torch.no_grad()
    def _track_usage(self, codes: torch.Tensor) -> None:
        counts = torch.bincount(codes.flatten(), minlength=self.hparams.n_codes)
        self.idle_steps += 1
        self.idle_steps[counts > 0] = 0
        self.usage.mul_(_USAGE_DECAY).add_(counts.float(), alpha=1.0 - _USAGE_DECAY)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z_e = self._encode_raw(x)
        if self.training and self.hparams.dead_after > 0:
            self._revive_dead_codes(z_e.detach())
        codes = self.nearest_codes(z_e)
        z_q = self.codebook[codes]
        if self.training:
            self._track_usage(codes)
        codebook_loss = per_sample_sse(z_q, z_e.detach())
        commit_loss = per_sample_sse(z_e, z_q.detach())
        z_st = z_e + (z_q - z_e).detach()
        return ModelOutput(
            recon=self.decode(z_st),
            latent=z_q,
            aux_loss=codebook_loss + self.hparams.commitment * commit_loss,
            extras={"codes": codes},
        )

    def loss(self, x: torch.Tensor, out: ModelOutput, epoch: int | None = None) -> LossOutput:
        result = super().loss(x, out, epoch)
        codes = out.extras["codes"]
        result.metrics["perplexity"] = perplexity(codes, self.hparams.n_codes)
        result.metrics["codes_used"] = float(codes.unique().numel()) / self.hparams.n_codes
        return result

    def sample_prior(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Codes drawn independently per position from the running usage frequencies sharpened
        (temperature < 1) or flattened (> 1); uniform if the model was never trained."""
        device = generator.device if generator is not None else self.codebook.device
        usage = self.usage.to(device)
        if float(usage.sum()) <= 0:
            probs = torch.ones_like(usage)
        else:
            probs = usage.clamp(min=1e-12).pow(1.0 / max(temperature, 1e-6))
        codes = torch.multinomial(
            probs, n * self.hparams.n_latents, replacement=True, generator=generator
        )
        return self.codebook[codes.to(self.codebook.device)].view(n, *self.latent_shape)

    @torch.no_grad()
    def latent_stats(self, x: torch.Tensor) -> LatentStats:
        """Statistics of the quantised vectors plus codebook usage and perplexity over `x`."""
        codes = self.nearest_codes(self._encode_raw(x))
        z = self.codebook[codes].flatten(1)
        var = z.var(0, unbiased=False)
        used = int(codes.unique().numel())
        return LatentStats(
            mean=z.mean(0),
            std=var.sqrt(),
            active_units=int((var > ACTIVE_UNIT_THRESHOLD).sum()),
            extra={
                "codes_used": float(used),
                "codebook_usage": used / self.hparams.n_codes,
                "perplexity": perplexity(codes, self.hparams.n_codes),
                "bits_per_sample": self.hparams.n_latents * math.log2(self.hparams.n_codes),
            },
        )
