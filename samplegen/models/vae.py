"""Fully connected variational auto-encoder on flat vectors (the original's inner model).

Loss = per-sample SSE + beta * w(epoch) * KL, where w is the KL warm-up weight and the KL may be
floored per latent dimension ("free bits", Kingma et al. 2016: each dimension's batch-mean KL
counts as at least `free_bits` nats, so the optimiser gains nothing by collapsing it further).

Encoding may refine the encoder's guess (`refine_steps`, semi-amortised inference, Kim et al.
2018): starting from the posterior mean, a few Adam steps on z lower SSE(decode(z), x) plus the
prior's pull beta/2 |z|^2. The encoder generalises worse than the decoder to instruments it never
saw, and closing that "amortisation gap" lowered the test error by about 9% (benchmarks/RESULTS.md,
sound quality). Training never refines; evaluation, reconstruction and generation do.

Training may start from a deliberate point instead of the random initialisation (`anchor_epochs`):
the encoder's mean first learns the training rows' principal components and the decoder learns to
decode them. From a random start, where a run ends is drawn by the shuffling of its first epochs:
the quick run's chosen VAE, trained again from 12 random starts, spread over 1.78-1.89 validation
RMS%; from this start 6 seeds spread over 1.77-1.80, while their test figures averaged the same as
the random starts' (benchmarks/RESULTS.md, "A deliberate start for the VAE").
"""

from __future__ import annotations

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
from samplegen.models.frame_decoder import TIME_FREQUENCIES, FrameDecoder
from samplegen.models.layers import ACTIVATIONS, interpolate_layer_sizes, mlp, per_sample_sse
from samplegen.models.refine import Refinement, refine_codes
from samplegen.models.registry import ModelRejected, register

WARMUPS: tuple[str, ...] = ("none", "linear", "cyclical")
DECODERS: tuple[str, ...] = ("mlp", "frames")


@dataclass(frozen=True)
class VAEHParams:
    """latent: latent dimensions; depth, ratio: layer sizes via interpolate_layer_sizes(D, latent,
    depth, ratio); beta: KL weight; warmup: none | linear (0 -> 1 over warmup_epochs) | cyclical
    (period warmup_epochs, repeated to the end of training: rises linearly over the first half
    of each period, then holds at 1 until the next period starts from 0); free_bits: per
    dimension KL floor in nats (0 = off); refine_steps: Adam steps on z when encoding outside
    training (0 = the posterior mean, as the original); refine_lr: their step size.
    decoder: mlp (the encoder's layers mirrored, as the original) | frames (one MLP shared by the
    `frames` frames of an outer frame code, `depth` hidden layers of `frame_hidden`; see
    samplegen.models.frame_decoder). A chained study sets `frames` from its outer model.
    frame_activation: the frame decoder's hidden activation (a name in layers.ACTIVATIONS; SiLU and
    ELU fitted worse than ReLU once codes are refined); time_frequencies: the sine/cosine pairs
    that tell it a frame's position (32 did as well as 16; RESULTS.md, "The frame decoder's
    activation and time features").
    anchor_epochs: epochs of the deliberate start before training (0 = a random start, as the
    original; see `anchor_targets`)."""

    latent: int = 7
    depth: int = 4
    ratio: float = 0.25
    beta: float = 1.0
    warmup: str = "none"
    warmup_epochs: int = 10
    free_bits: float = 0.0
    refine_steps: int = 0
    refine_lr: float = 0.05
    decoder: str = "mlp"
    frames: int = 0
    frame_hidden: int = 512
    frame_activation: str = "relu"
    time_frequencies: int = TIME_FREQUENCIES
    anchor_epochs: int = 0

    def __post_init__(self) -> None:
        if self.latent < 1:
            raise ValueError(f"latent must be at least 1, got {self.latent}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.ratio <= 0:
            raise ValueError(f"ratio must be positive, got {self.ratio}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.warmup not in WARMUPS:
            raise ValueError(f"warmup {self.warmup!r} is not one of {WARMUPS}")
        if self.warmup_epochs < 1:
            raise ValueError(f"warmup_epochs must be at least 1, got {self.warmup_epochs}")
        if self.free_bits < 0:
            raise ValueError(f"free_bits must be >= 0, got {self.free_bits}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {self.refine_steps}")
        if not self.refine_lr > 0:
            raise ValueError(f"refine_lr must be positive, got {self.refine_lr}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder {self.decoder!r} is not one of {DECODERS}")
        if self.decoder == "frames" and self.frames < 1:
            raise ValueError(
                "decoder 'frames' needs frames >= 1 (the outer code's frame count; a chained "
                f"study sets it from its outer model), got {self.frames}"
            )
        if self.frame_hidden < 1:
            raise ValueError(f"frame_hidden must be at least 1, got {self.frame_hidden}")
        if self.frame_activation not in ACTIVATIONS:
            raise ValueError(
                f"frame_activation {self.frame_activation!r} is not one of {ACTIVATIONS}"
            )
        if self.time_frequencies < 1:
            raise ValueError(f"time_frequencies must be at least 1, got {self.time_frequencies}")
        if self.anchor_epochs < 0:
            raise ValueError(f"anchor_epochs must be >= 0, got {self.anchor_epochs}")


def kl_weight(warmup: str, epoch: int | None, warmup_epochs: int) -> float:
    """The warm-up factor (0..1) applied to beta at `epoch` (counted from 1; None: fully warmed
    up). Linear reaches 1 at epoch `warmup_epochs`."""
    if warmup == "none" or epoch is None:
        return 1.0
    if warmup == "linear":
        return min(1.0, epoch / warmup_epochs)
    # Cyclical (Fu et al. 2019, R = 0.5): each period starts at 0, ramps over its first half, then
    # holds at 1 to its last epoch (epochs count from 1, so a period is epochs kP+1 .. (k+1)P).
    phase = ((epoch - 1) % warmup_epochs) / warmup_epochs
    return min(1.0, 2.0 * phase)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(N(mu, e^logvar) || N(0, 1)) of each latent dimension, in nats: shape (D,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).mean(0)


def layer_sizes(input_dim: int, hp: VAEHParams, name: str) -> list[int]:
    """Encoder widths [D, ..., latent]; ModelRejected if a hidden layer would be empty."""
    sizes = interpolate_layer_sizes(input_dim, hp.latent, hp.depth, hp.ratio)
    if any(s < 1 for s in sizes):
        raise ModelRejected(f"model {name}: layer sizes {sizes} include an empty layer")
    return sizes


@register(VAEHParams)
class VAE(InnerModel):
    """(B, D) -> mu, logvar (B, latent) -> z -> (B, D). Hidden layers ReLU, no output activation."""

    name = "vae"

    def __init__(self, hparams: VAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 1:
            raise ModelRejected(f"model vae: needs a flat (D,) input, got {self.input_shape}")
        sizes = layer_sizes(self.input_shape[0], hparams, self.name)
        self.sizes = sizes
        self.encoder = mlp(sizes[:-1], final_activation=True)
        self.fc_mu = nn.Linear(sizes[-2], sizes[-1])
        self.fc_logvar = nn.Linear(sizes[-2], sizes[-1])
        self.decoder = self._decoder(hparams, self.input_shape[0])

    def _decoder(self, hp: VAEHParams, dim: int) -> nn.Module:
        if hp.decoder == "mlp":
            return mlp(self.sizes[::-1])
        if dim % hp.frames:
            raise ModelRejected(
                f"model vae: decoder 'frames' cannot split {dim} values into {hp.frames} frames"
            )
        return FrameDecoder(
            hp.latent,
            dim // hp.frames,
            hp.frames,
            hp.frame_hidden,
            hp.depth,
            hp.frame_activation,
            hp.time_frequencies,
        )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.latent,)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode_amortized(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.posterior(x)[0]
        return self.refine(mu, x) if self.hparams.refine_steps and not self.training else mu

    def refinement(self) -> Refinement | None:
        """How codes are refined outside training (None when `refine_steps` is 0)."""
        hp = self.hparams
        if not hp.refine_steps:
            return None
        # The negative log-prior of z under the KL weight beta: beta / 2 |z|^2.
        return Refinement(hp.refine_steps, hp.refine_lr, 0.5 * hp.beta)

    def refine(self, z0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`refine_steps` Adam steps on z from `z0` towards the MAP code of `x` (detached result;
        see samplegen.models.refine)."""
        settings = self.refinement()
        return z0.detach() if settings is None else refine_codes(self.decoder, z0, x, settings)

    def output_for(self, x: torch.Tensor, z: torch.Tensor) -> ModelOutput:
        """The output for input `x` decoded from a given code `z` (e.g. one refined elsewhere)."""
        mu, logvar = self.posterior(x)
        return ModelOutput(recon=self.decode(z), latent=z, mu=mu, logvar=logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.posterior(x)
        # Eval mode decodes the mean (refined if asked), so evaluation is deterministic.
        if self.training:
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        elif self.hparams.refine_steps:
            z = self.refine(mu, x)
        else:
            z = mu
        return ModelOutput(recon=self.decode(z), latent=z, mu=mu, logvar=logvar)

    def loss(self, x: torch.Tensor, out: ModelOutput, epoch: int | None = None) -> LossOutput:
        assert out.mu is not None and out.logvar is not None
        recon = per_sample_sse(out.recon, x)
        kl_dims = kl_per_dim(out.mu, out.logvar)
        kl = kl_dims.sum()
        kl_floored = (
            kl_dims.clamp(min=self.hparams.free_bits).sum() if self.hparams.free_bits else kl
        )
        w = kl_weight(self.hparams.warmup, epoch, self.hparams.warmup_epochs)
        total = recon + self.hparams.beta * w * kl_floored
        metrics = {
            "recon": float(recon.detach()),
            "kl": float(kl.detach()),
            "kl_weight": self.hparams.beta * w,
            "active_units": float(
                (out.mu.detach().var(0, unbiased=False) > ACTIVE_UNIT_THRESHOLD).sum()
            )
            if out.mu.shape[0] > 1
            else float("nan"),
        }
        return LossOutput(total=total, recon=recon, metrics=metrics)

    def anchor_epochs(self) -> int:
        return self.hparams.anchor_epochs

    def anchor_targets(self, x: torch.Tensor) -> torch.Tensor:
        """The first `latent` principal components of the rows `x` (N, D), each scaled to unit
        variance, the prior's; zero columns where the rows span fewer dimensions."""
        centred = x.float() - x.float().mean(0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        # Directions with no spread of their own would only scale rounding noise up to unit size.
        spread = int((s > s[0] * 1e-5).sum()) if len(s) and s[0] > 0 else 0
        coords = centred @ vh[: min(self.hparams.latent, spread)].T
        if spread:
            coords = coords / coords.std(0)
        return nn.functional.pad(coords, (0, self.hparams.latent - coords.shape[1]))

    def anchor_loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The encoder's mean regressed on the targets plus the decoder's SSE decoding them. The
        two own disjoint weights, so each learns its half as if trained alone."""
        mean_error = (self.posterior(x)[0] - targets).pow(2).sum(1).mean()
        return mean_error + per_sample_sse(self.decode(targets), x)

    def sample_prior(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        device = generator.device if generator is not None else self._device()
        return temperature * torch.randn(n, self.hparams.latent, generator=generator, device=device)

    @torch.no_grad()
    def latent_stats(self, x: torch.Tensor) -> LatentStats:
        """Posterior-mean statistics, KL per dimension and active units (Burda et al. 2016)."""
        mu, logvar = self.posterior(x)
        var = mu.var(0, unbiased=False)
        return LatentStats(
            mean=mu.mean(0),
            std=var.sqrt(),
            active_units=int((var > ACTIVE_UNIT_THRESHOLD).sum()),
            kl_per_dim=kl_per_dim(mu, logvar),
        )
