"""Run a model over a split in batches: deterministic reconstructions, per-sample losses, latents.

Reconstructions are `decode(encode(x))` with the model in eval mode, so a VAE is judged on its
posterior mean (no sampling noise) and two evaluations of one model give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

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


def joined(a: SplitOutputs, b: SplitOutputs) -> SplitOutputs:
    """The outputs of two splits as one (row for row, `a` first)."""

    def cat(u: np.ndarray | None, v: np.ndarray | None) -> np.ndarray | None:
        return None if u is None or v is None else np.concatenate([u, v])

    return SplitOutputs(
        losses=np.concatenate([a.losses, b.losses]),
        recon=cat(a.recon, b.recon),
        latent=np.concatenate([a.latent, b.latent]),
        outer_latent=cat(a.outer_latent, b.outer_latent),
        inner_losses=cat(a.inner_losses, b.inner_losses),
        outer_losses=cat(a.outer_losses, b.outer_losses),
    )


def is_combined(model: SampleModel) -> TypeGuard[CombinedModel]:
    """A chained outer + inner model (it has frozen `outer` and `inner` parts)."""
    return isinstance(model, CombinedModel)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


@torch.no_grad()
def run_model(
    model: SampleModel,
    x: np.ndarray,
    *,
    batch_size: int,
    device: str | torch.device,
    keep_recon: bool = True,
) -> SplitOutputs:
    """Reconstruct every sample of `x` (N, *input_shape) in batches of `batch_size` on `device`."""
    model.eval()
    losses, recons, latents, outers, inner_losses, outer_losses = [], [], [], [], [], []
    for start in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])).to(device)
        if is_combined(model):
            h = model.outer.encode(xb)
            flat_h = h.flatten(1)
            # The combined model's own codes: refined end to end when its inner model refines.
            z = model.encode_flat(flat_h, xb)
            h_hat = model.inner.decode(z)
            recon = model.outer.decode(h_hat.reshape(h.shape))
            outers.append(_np(flat_h))
            inner_losses.append(sample_loss(h_hat.flatten(1), flat_h).double().cpu().numpy())
            outer_only = model.outer.decode(h)
            outer_losses.append(sample_loss(outer_only, xb).double().cpu().numpy())
        else:
            z = model.encode(xb)
            recon = model.decode(z)
        losses.append(sample_loss(recon, xb).double().cpu().numpy())
        latents.append(_np(z.flatten(1)))
        if keep_recon:
            recons.append(_np(recon))
    n = x.shape[0]
    empty = np.zeros((0,), dtype=np.float64)
    return SplitOutputs(
        losses=np.concatenate(losses) if losses else empty,
        recon=(np.concatenate(recons) if recons else np.zeros((0, *x.shape[1:]), np.float32))
        if keep_recon
        else None,
        latent=np.concatenate(latents) if latents else np.zeros((n, 0), np.float32),
        outer_latent=np.concatenate(outers) if outers else None,
        inner_losses=np.concatenate(inner_losses) if inner_losses else None,
        outer_losses=np.concatenate(outer_losses) if outer_losses else None,
    )
