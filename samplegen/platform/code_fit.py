"""Store with a trained model the Gaussian mixture of its codes for the training notes.

New chained and fine-tuned models get it when they are written (`chain.export_combined`,
`finetune.finetune_combined`); this adds it to a model written before, or refits it on another
dataset. Random sounds are then drawn from it (samplegen.models.code_distribution says why).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samplegen.errors import SamplegenError
from samplegen.models.code_distribution import COMPONENTS


def fit_model_folder(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    components: int = COMPONENTS,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit the codes of dataset `data`'s training split under the model in folder `model` (a
    Gaussian mixture of at most `components` components); write the model with them to `out`
    (default: in place, atomically). Returns the stored dict."""
    from samplegen.models.artifact import check_dataset, load_model, save_model
    from samplegen.models.code_distribution import CODE_DISTRIBUTION_KEY, fit_model_codes
    from samplegen.platform.datasets import load_dataset, require_dataset_info
    from samplegen.platform.resources import trial_device

    if components < 1:
        raise SamplegenError(f"--components: must be >= 1, got {components}")
    # The model must sit where its inputs are sent; trial_device also names a bad --device.
    device = trial_device(0.0 if device == "cpu" else 1.0, device)
    loaded = load_model(model, device=device)
    if loaded.model.kind == "inner":
        raise SamplegenError(
            f"{model}: an inner model alone takes encodings; fit the combined model instead"
        )
    require_dataset_info(data, label=f"--data {data}")
    ds = load_dataset(data, splits=("train",))
    check_dataset(loaded, ds)
    x = ds.splits["train"].x
    fitted = fit_model_codes(
        loaded.model,
        x,
        f"encoder means of {len(x)} training notes of {data}",
        device=device,
        components=components,
    )
    if fitted is None:
        raise SamplegenError(
            f"{model}: model {loaded.meta.name!r} has no continuous code of at most a few hundred "
            "values to fit (a VQ-VAE's codebook, or a large outer code)"
        )
    target = Path(out) if out is not None else loaded.meta.directory
    save_model(
        target,
        loaded.model,
        codec=loaded.codec,
        dataset_fingerprint=loaded.meta.dataset_fingerprint,
        metrics=loaded.meta.metrics,
        extra={**loaded.meta.extra, CODE_DISTRIBUTION_KEY: fitted.to_dict()},
    )
    spread = ", ".join(f"{v:.2f}" for v in fitted.std)
    echo(
        f"{target}: fitted the codes of {fitted.count} training notes with "
        f"{fitted.components} Gaussian(s) (std per latent {spread})"
    )
    return fitted.to_dict()
