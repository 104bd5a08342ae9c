"""The same-size PCA reference beside a combined model's figures (issue 9).

A combined model with k inner latent variables is set against a k-component PCA fitted on the same
outer encodings of the notes the model trained on (the train split; train and validation for a
refit model), decoded by the same frozen outer decoder, so a linear fit is never mistaken for a
learned latent space.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from samplegen.models.combined import CombinedModel
from samplegen.platform.evaluation.inference import SplitOutputs
from samplegen.platform.pca import Decoder, loss_summary, pca_reference_decoded


def compares(fitted_on: list[str]) -> str:
    """What the reference compares, for a PCA fitted on the splits `fitted_on`."""
    return (
        f"k-component PCA fitted on the frozen outer model's encodings of the "
        f"{' and '.join(fitted_on)} split{'s' if len(fitted_on) > 1 else ''}, the notes the model "
        "trained on (k = the inner model's latent size); encoded: loss of the projection in the "
        "encoding's units; end_to_end: projection decoded by the frozen outer decoder vs the "
        "input, in the outer representation's units, like the combined model's loss"
    )


def outer_decoder(model: CombinedModel, device: str | torch.device) -> Decoder:
    """A numpy -> numpy function running the combined model's frozen outer decoder."""
    outer = model.outer
    shape = tuple(outer.latent_shape)

    @torch.no_grad()
    def decode(z: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(device)
        return outer.decode(t.reshape(t.shape[0], *shape)).to("cpu", torch.float32).numpy()

    return decode


def combined_reference(
    model: CombinedModel,
    train_x: np.ndarray,
    eval_x: np.ndarray,
    train_out: SplitOutputs,
    eval_out: SplitOutputs,
    *,
    batch_size: int,
    device: str | torch.device,
    fitted_on: list[str] | None = None,
) -> dict[str, Any]:
    """PCA reference (k = inner latent size) next to the combined model's own figures.

    `train_x`/`train_out`: the notes the model trained on, which the PCA is fitted on; `fitted_on`
    names their splits (default ["train"]; a refit model trained on validation too)."""
    fitted_on = fitted_on or ["train"]
    if train_out.outer_latent is None or eval_out.outer_latent is None:
        raise ValueError("pca reference: the outputs carry no outer encodings (not combined)")
    k = int(math.prod(model.inner.latent_shape))
    ref = pca_reference_decoded(
        train_out.outer_latent,
        eval_out.outer_latent,
        train_x,
        eval_x,
        n_components=k,
        decode=outer_decoder(model, device),
        batch_size=batch_size,
    )
    enc_dims = ref["encoded"]["values_per_sample"]
    e2e_dims = ref["end_to_end"]["values_per_sample"]

    def pair(train: np.ndarray | None, evaluated: np.ndarray | None, dims: int) -> dict[str, Any]:
        assert train is not None and evaluated is not None
        return {"train": loss_summary(train, dims), "eval": loss_summary(evaluated, dims)}

    return {
        "compares": compares(fitted_on),
        "fitted_on": fitted_on,
        "pca": ref,
        "model": {
            "encoded": pair(train_out.inner_losses, eval_out.inner_losses, enc_dims),
            "end_to_end": pair(train_out.losses, eval_out.losses, e2e_dims),
        },
        "outer_only": pair(train_out.outer_losses, eval_out.outer_losses, e2e_dims),
    }
