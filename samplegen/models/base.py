"""The interface every model implements, and the records models hand back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from samplegen.models.layers import per_sample_sse
from samplegen.models.refine import Refinement

# Burda et al. (2016): a latent dimension is active when the variance across samples of its
# posterior mean exceeds this threshold.
ACTIVE_UNIT_THRESHOLD = 0.01


@dataclass
class ModelOutput:
    """What `forward` returns.

    `latent` is the code the decoder used (VAE: the sample z; VQ-VAE: the quantised vectors);
    `mu`/`logvar` are set by variational models; `aux_loss` is an extra term already weighted
    (VQ-VAE codebook + commitment); `extras` holds model-specific tensors (VQ code indices).
    """

    recon: torch.Tensor
    latent: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class LossOutput:
    """A loss to minimise (`total`), its reconstruction term, and scalar figures to log."""

    total: torch.Tensor
    recon: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class LatentStats:
    """Statistics of an inner model's latent over a set of inputs.

    `active_units`: dimensions whose posterior mean (or code) varies across samples with variance
    above ACTIVE_UNIT_THRESHOLD (Burda et al. 2016, Cov_x(E_q[z]) > 0.01).
    `kl_per_dim`: mean KL(q(z_d|x) || N(0, 1)) per dimension (variational models only).
    `extra`: model-specific figures (VQ-VAE: codebook usage and perplexity).
    """

    mean: torch.Tensor
    std: torch.Tensor
    active_units: int
    kl_per_dim: torch.Tensor | None = None
    extra: dict[str, float] = field(default_factory=dict)


class SampleModel(nn.Module):
    """Base of every model: an auto-encoder with a known input shape and latent shape.

    Subclasses set `name` and `kind` (outer_stft, outer_wave, inner, combined), build their layers
    in `__init__(hparams, input_shape)` (raising ModelRejected for impossible shapes), and
    implement `encode`, `decode` and `latent_shape`.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    # Why the model's graphs cannot be written as ONNX, when they cannot (None: they can).
    onnx_obstacle: ClassVar[str | None] = None

    def __init__(self, hparams: Any, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.hparams = hparams
        self.input_shape = tuple(int(d) for d in input_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one sample's latent (no batch axis)."""
        raise NotImplementedError

    def num_params(self) -> int:
        """Number of trainable parameters (works on the meta device too)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def compression(self) -> float:
        """Input values per latent value."""
        return math.prod(self.input_shape) / math.prod(self.latent_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Batch of inputs -> batch of latents (variational models: the posterior mean)."""
        raise NotImplementedError

    def encode_amortized(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder network's answer alone, without any per-input optimisation (what exported
        graphs hold); the same as `encode` unless a model refines its codes."""
        return self.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Batch of latents -> batch of reconstructions with the input's shape."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        return ModelOutput(recon=self.decode(z), latent=z)

    def loss(self, x: torch.Tensor, out: ModelOutput, epoch: int | None = None) -> LossOutput:
        """Per-sample sum of squared errors averaged over the batch, plus any auxiliary term."""
        recon = per_sample_sse(out.recon, x)
        total = recon if out.aux_loss is None else recon + out.aux_loss
        metrics = {"recon": float(recon.detach())}
        if out.aux_loss is not None:
            metrics["aux"] = float(out.aux_loss.detach())
        return LossOutput(total=total, recon=recon, metrics=metrics)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)): the deterministic reconstruction."""
        return self.decode(self.encode(x))

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


class InnerModel(SampleModel):
    """A model on flat (B, D) vectors that can also sample its latent space."""

    kind: ClassVar[str] = "inner"

    def refinement(self) -> Refinement | None:
        """How this model refines codes outside training; None (the default) when it does not."""
        return None

    def anchor_epochs(self) -> int:
        """Epochs of a deliberate start before training (samplegen.platform.training.Trainer.anchor);
        0 (the default): training starts from the random initialisation."""
        return 0

    def anchor_targets(self, x: torch.Tensor) -> torch.Tensor:
        """The codes the deliberate start teaches for the training rows `x` (N, D)."""
        raise NotImplementedError

    def anchor_loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The deliberate start's loss on a batch `x` and its rows of `anchor_targets`."""
        raise NotImplementedError

    def output_for(self, x: torch.Tensor, z: torch.Tensor) -> ModelOutput:
        """The output for input `x` decoded from a given code `z` (a code refined elsewhere)."""
        return ModelOutput(recon=self.decode(z), latent=z)

    def sample_prior(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """`n` latent codes drawn from the model's prior, spread scaled by `temperature`."""
        raise NotImplementedError

    @torch.no_grad()
    def latent_stats(self, x: torch.Tensor) -> LatentStats:
        """Statistics of the latent codes of `x` (B, D); see LatentStats."""
        z = self.encode(x).flatten(1)
        var = z.var(0, unbiased=False)
        return LatentStats(
            mean=z.mean(0),
            std=var.sqrt(),
            active_units=int((var > ACTIVE_UNIT_THRESHOLD).sum()),
        )
