"""An outer auto-encoder chained with an inner model on its flattened latent."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from samplegen.models.base import InnerModel, LossOutput, ModelOutput, SampleModel
from samplegen.models.layers import per_sample_sse
from samplegen.models.refine import refine_codes
from samplegen.models.registry import (
    HParamError,
    hparams_dict,
    make_hparams,
    model_class,
    register,
)


@dataclass(frozen=True)
class CombinedHParams:
    """outer / inner: registered model names; outer_hparams / inner_hparams: their dicts."""

    outer: str = "conv2d_ae"
    inner: str = "vae"
    outer_hparams: dict[str, Any] = field(default_factory=dict)
    inner_hparams: dict[str, Any] = field(default_factory=dict)


@register(CombinedHParams)
class CombinedModel(SampleModel):
    """x -> outer.encode -> flatten -> inner.encode -> z -> inner.decode -> reshape -> outer.decode.

    Weights live under the prefixes `outer.` and `inner.`; build one from two trained models with
    `CombinedModel.from_parts(outer, inner)`. When the inner model refines its codes (a VAE's
    `refine_steps`), the combined model refines them end to end instead: through the outer
    decoder, against its own input.
    """

    name = "combined"
    kind = "combined"
    outer: SampleModel
    inner: InnerModel

    def __init__(
        self,
        hparams: CombinedHParams,
        input_shape: tuple[int, ...],
        parts: tuple[SampleModel, InnerModel] | None = None,
    ) -> None:
        super().__init__(hparams, input_shape)
        if parts is None:
            outer_cls, inner_cls = model_class(hparams.outer), model_class(hparams.inner)
            if not outer_cls.kind.startswith("outer"):
                raise HParamError(f"model combined: outer {hparams.outer!r} is not an outer model")
            if inner_cls.kind != "inner":
                raise HParamError(f"model combined: inner {hparams.inner!r} is not an inner model")
            outer = outer_cls(make_hparams(hparams.outer, hparams.outer_hparams), input_shape)
            inner_shape = (math.prod(outer.latent_shape),)
            inner = inner_cls(make_hparams(hparams.inner, hparams.inner_hparams), inner_shape)
            if not isinstance(inner, InnerModel):
                raise HParamError(f"model combined: inner {hparams.inner!r} is not an inner model")
            parts = (outer, inner)
        self.outer, self.inner = parts

    @classmethod
    def from_parts(cls, outer: SampleModel, inner: InnerModel) -> CombinedModel:
        """Chain two built (typically trained) models; the inner must take the outer's latent."""
        want = (math.prod(outer.latent_shape),)
        if tuple(inner.input_shape) != want:
            raise HParamError(
                f"model combined: inner input {inner.input_shape} != outer latent size {want}"
            )
        hp = CombinedHParams(
            outer=outer.name,
            inner=inner.name,
            outer_hparams=hparams_dict(outer.hparams),
            inner_hparams=hparams_dict(inner.hparams),
        )
        return cls(hp, outer.input_shape, parts=(outer, inner))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.inner.latent_shape

    @property
    def compression(self) -> float:
        return self.outer.compression * self.inner.compression

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer.encode(x).flatten(1)

    def _unflat(self, h: torch.Tensor) -> torch.Tensor:
        return self.outer.decode(h.view(-1, *self.outer.latent_shape))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_flat(self._flat(x), x)

    def encode_flat(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The code of input `x` from its flattened outer encoding `flat` (already computed)."""
        z = self._refined(flat, x)
        return self.inner.encode(flat) if z is None else z

    def _refined(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        """The code refined end to end, or None when the inner model does not refine (or trains).

        Through the outer decoder, against the input itself: the error that counts is the one in
        the input domain, which an encoded-space fit weighs differently (validation 2.06 -> 1.99%
        RMS on the quick run: benchmarks/RESULTS.md).
        """
        settings = None if self.training else self.inner.refinement()
        if settings is None:
            return None
        return refine_codes(self.decode, self.inner.encode_amortized(flat), x, settings)

    def encode_amortized(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.encode_amortized(self._flat(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._unflat(self.inner.decode(z))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.forward_flat(self._flat(x), x)

    def forward_flat(self, flat: torch.Tensor, x: torch.Tensor) -> ModelOutput:
        """`forward(x)` given `flat`, the flattened outer encoding of `x`, computed beforehand (with
        the outer model frozen, encodings do not change from one step to the next)."""
        z = self._refined(flat, x)
        inner_out = self.inner(flat) if z is None else self.inner.output_for(flat, z)
        return ModelOutput(
            recon=self._unflat(inner_out.recon),
            latent=inner_out.latent,
            mu=inner_out.mu,
            logvar=inner_out.logvar,
            aux_loss=inner_out.aux_loss,
            extras={"inner_input": flat, "inner_recon": inner_out.recon, **inner_out.extras},
        )

    def loss(self, x: torch.Tensor, out: ModelOutput, epoch: int | None = None) -> LossOutput:
        """SSE in the outer model's input domain + the inner model's regulariser (KL, VQ terms)."""
        recon = per_sample_sse(out.recon, x)
        inner_in = out.extras["inner_input"]
        inner_out = ModelOutput(
            recon=out.extras["inner_recon"],
            latent=out.latent,
            mu=out.mu,
            logvar=out.logvar,
            aux_loss=out.aux_loss,
            extras={k: v for k, v in out.extras.items() if not k.startswith("inner_")},
        )
        inner_loss = self.inner.loss(inner_in, inner_out, epoch)
        regulariser = inner_loss.total - inner_loss.recon
        metrics = {"recon": float(recon.detach())}
        metrics.update({f"inner_{k}": v for k, v in inner_loss.metrics.items()})
        return LossOutput(total=recon + regulariser, recon=recon, metrics=metrics)

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """`n` new outputs decoded from the inner model's prior."""
        z = self.inner.sample_prior(n, temperature, generator)
        return self.decode(z.to(self._device()))


class TrainsOnEncodings(torch.nn.Module):
    """A combined model with a frozen outer model, trained on rows that carry each input's outer
    encoding beside the input.

    Why: the frozen outer model's encodings do not change, yet training the combined model
    directly runs every batch of every epoch through the outer encoder again; `rows` computes
    them once. A row is the flattened encoding followed by the flattened input. The outer and
    inner models are registered under the combined model's own names, so weights and
    checkpoints read the same as the combined model's, and the outer model stays in eval mode
    whatever mode this module is put in.
    """

    combined: CombinedModel
    outer: SampleModel
    inner: InnerModel

    def __init__(self, combined: CombinedModel) -> None:
        super().__init__()
        # Not a submodule: its weights are registered below, under the combined model's names.
        self.__dict__["combined"] = combined
        self.outer, self.inner = combined.outer, combined.inner
        self.width = math.prod(combined.outer.latent_shape)
        self.input_shape = tuple(combined.input_shape)

    def train(self, mode: bool = True) -> TrainsOnEncodings:
        super().train(mode)
        # The combined model's own flag decides whether codes are refined (eval mode only).
        self.combined.train(mode)
        self.outer.eval()
        return self

    @torch.no_grad()
    def rows(self, parts: list[np.ndarray], device: str = "cpu", batch: int = 64) -> np.ndarray:
        """One float32 array of rows for the inputs of `parts` (arrays of inputs), in order."""
        size = math.prod(self.input_shape)
        out = np.empty((sum(len(p) for p in parts), self.width + size), dtype=np.float32)
        self.outer.eval()
        at = 0
        for part in parts:
            for start in range(0, len(part), batch):
                x = np.ascontiguousarray(part[start : start + batch], dtype=np.float32)
                flat = self.outer.encode(torch.from_numpy(x).to(device)).flatten(1)
                out[at : at + len(x), : self.width] = flat.cpu().numpy()
                out[at : at + len(x), self.width :] = x.reshape(len(x), -1)
                at += len(x)
        return out

    def split(self, row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flattened encodings, inputs) of a batch of rows."""
        return row[:, : self.width], row[:, self.width :].reshape(-1, *self.input_shape)

    def forward(self, row: torch.Tensor) -> ModelOutput:
        return self.combined.forward_flat(*self.split(row))

    def loss(self, row: torch.Tensor, out: ModelOutput, epoch: int | None = None) -> LossOutput:
        """The combined model's loss against the inputs the rows carry."""
        return self.combined.loss(self.split(row)[1], out, epoch)
