"""Run a model over a split in batches: deterministic reconstructions, per-sample losses, latents.

Reconstructions are `decode(encode(x))` with the model in eval mode, so a VAE is judged on its
posterior mean (no sampling noise) and two evaluations of one model give the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeGuard

import numpy as np
import torch

from samplegen.dsp.metrics import sample_loss
from samplegen.models.base import SampleModel
from samplegen.models.combined import CombinedModel


@dataclass(frozen=True)
class SplitOutputs:
    """What a model made of one split.

    `losses`: per-sample SSE of the model's output against its input (outer units), (N,) float64.
    `recon`: (N, *input_shape) float32 or None when not kept.
    `latent`: the model's latent, flattened, (N, latent values) float32 (combined: the inner latent).
    `outer_latent`: combined models only: the frozen outer encoder's output, flattened.
    `inner_losses`: combined models only: per-sample SSE of the inner model's reconstruction of the
    outer encoding against that encoding (the encoded-domain loss), (N,) float64.
    `outer_losses`: combined models only: per-sample SSE of the outer model alone (decode of its own
    encoding) against the input: the floor any inner model on these encodings can reach.
    """

    losses: np.ndarray
    recon: np.ndarray | None
    latent: np.ndarray
    outer_latent: np.ndarray | None = None
    inner_losses: np.ndarray | None = None
    outer_losses: np.ndarray | None = None


def joined(*outputs: SplitOutputs) -> SplitOutputs:
    """Outputs of several batches or splits as one, row for row in the order given (a field
    missing from any of them is missing from the result)."""

    def cat(name: str) -> np.ndarray | None:
        values = [getattr(o, name) for o in outputs]
        return None if any(v is None for v in values) else np.concatenate(values)

    return SplitOutputs(
        losses=np.concatenate([o.losses for o in outputs]),
        recon=cat("recon"),
        latent=np.concatenate([o.latent for o in outputs]),
        outer_latent=cat("outer_latent"),
        inner_losses=cat("inner_losses"),
        outer_losses=cat("outer_losses"),
    )


def is_combined(model: SampleModel) -> TypeGuard[CombinedModel]:
    """A chained outer + inner model (it has frozen `outer` and `inner` parts)."""
    return isinstance(model, CombinedModel)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


class KeptOutputs(Protocol):
    """Where a split's outputs are kept a batch at a time (evaluation.kept.KeptBatches)."""

    def get(self, split: str, start: int, rows: int) -> SplitOutputs | None: ...

    def keep(self, split: str, start: int, outputs: SplitOutputs) -> None: ...


@torch.no_grad()
def run_model(
    model: SampleModel,
    x: np.ndarray,
    *,
    batch_size: int,
    device: str | torch.device,
    keep_recon: bool = True,
    kept: tuple[KeptOutputs, str] | None = None,
    done: Callable[[int], None] | None = None,
) -> SplitOutputs:
    """Reconstruct every sample of `x` (N, *input_shape) in batches of `batch_size` on `device`.

    `kept`: (where, split name): each batch's outputs are taken from there when kept, and kept
    there when computed. `done`: told the number of samples of each batch once it is done.
    """
    model.eval()
    parts = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        out = None if kept is None else kept[0].get(kept[1], start, xb.shape[0])
        if out is None or (keep_recon and out.recon is None):
            out = _batch_outputs(model, xb, device, keep_recon)
            if kept is not None:
                kept[0].keep(kept[1], start, out)
        parts.append(out if keep_recon else dataclasses.replace(out, recon=None))
        if done is not None:
            done(xb.shape[0])
    if not parts:
        empty = np.zeros((0,), dtype=np.float64)
        recon = np.zeros((0, *x.shape[1:]), np.float32) if keep_recon else None
        return SplitOutputs(losses=empty, recon=recon, latent=np.zeros((0, 0), np.float32))
    return joined(*parts)


def _batch_outputs(
    model: SampleModel, x: np.ndarray, device: str | torch.device, keep_recon: bool
) -> SplitOutputs:
    """The outputs of one batch of inputs (`recon` only when `keep_recon`)."""
    xb = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    outer_latent = inner_losses = outer_losses = None
    if is_combined(model):
        h = model.outer.encode(xb)
        flat_h = h.flatten(1)
        # The combined model's own codes: refined end to end when its inner model refines.
        z = model.encode_flat(flat_h, xb)
        h_hat = model.inner.decode(z)
        recon = model.outer.decode(h_hat.reshape(h.shape))
        outer_latent = _np(flat_h)
        inner_losses = sample_loss(h_hat.flatten(1), flat_h).double().cpu().numpy()
        outer_losses = sample_loss(model.outer.decode(h), xb).double().cpu().numpy()
    else:
        z = model.encode(xb)
        recon = model.decode(z)
    return SplitOutputs(
        losses=sample_loss(recon, xb).double().cpu().numpy(),
        recon=_np(recon) if keep_recon else None,
        latent=_np(z.flatten(1)),
        outer_latent=outer_latent,
        inner_losses=inner_losses,
        outer_losses=outer_losses,
    )
