"""Code refinement: a few Adam steps on latent codes towards the decoder's best fit of each input.

Shared by the VAE (in its own input space) and the combined model (through the outer decoder, in
the outer model's input domain, which is where reconstructions are judged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Refinement:
    """steps: Adam steps; lr: their size; prior: weight of |z|^2 (a VAE's beta / 2)."""

    steps: int
    lr: float
    prior: float


def refine_codes(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    target: torch.Tensor,
    settings: Refinement,
) -> torch.Tensor:
    """Minimise SSE(decode(z), target) + prior |z|^2 from `z0`; the detached result.

    Each sample's code is optimised on its own (Adam is element-wise and the loss a sum over
    samples), so a code does not depend on its batch. No weight gets a gradient.
    """
    target = target.detach()
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=settings.lr)
    with torch.enable_grad():
        for _ in range(settings.steps):
            err = (decode(z) - target).pow(2).sum() + settings.prior * z.pow(2).sum()
            (z.grad,) = torch.autograd.grad(err, z)
            opt.step()
    return z.detach()
