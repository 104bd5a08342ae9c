"""Hyper-parameter parsing, the parameter cap and impossible shapes."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

from samplegen.errors import SamplegenError
from samplegen.models.registry import (
    HParamError,
    ModelRejected,
    build_model,
    count_params,
    hparams_class,
    model_names,
)


def test_kinds() -> None:
    assert model_names("outer_stft") == ["conv2d_ae", "frame_ae", "mlp_ae", "rnn_ae"]
    assert model_names("outer_wave") == ["audio_conv_ae", "harmonic_ae"]
    assert model_names("inner") == ["bounded_ae", "vae", "vq_vae"]
    with pytest.raises(HParamError):
        model_names("bogus")


def test_unknown_keys_are_named() -> None:
    with pytest.raises(HParamError, match="latnt"):
        build_model("vae", {"latnt": 3}, (64,))


def test_numpy_scalars_are_coerced() -> None:
    model = build_model(
        "vae", {"latent": np.int64(3), "depth": np.float64(2.0), "ratio": np.float32(0.5)}, (64,)
    )
    assert model.hparams == hparams_class("vae")(latent=3, depth=2, ratio=0.5)
    assert type(model.hparams.depth) is int and type(model.hparams.ratio) is float
    with pytest.raises(HParamError, match="latent"):
        build_model("vae", {"latent": 3.5}, (64,))
    with pytest.raises(HParamError, match="activation"):
        build_model("conv2d_ae", {"activation": "swish"}, (65, 12))


def test_unknown_model_name() -> None:
    with pytest.raises(SamplegenError, match="nonesuch"):
        build_model("nonesuch", {}, (64,))


def test_cap_rejects_before_allocating() -> None:
    hp = {"latent": 10, "depth": 2, "ratio": 1.0}
    # About 2e10 parameters (80 GB in float32) if it were ever allocated.
    assert count_params("vae", hp, (200_000,)) > 10**10
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelRejected, match="max_params=1,000,000"):
        build_model("vae", hp, (200_000,), max_params=1_000_000)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000


def test_cap_allows_models_within_it() -> None:
    n = count_params("conv2d_ae", {}, (1025, 83))
    assert build_model("conv2d_ae", {}, (1025, 83), max_params=n).num_params() == n


def test_impossible_shapes_are_rejected() -> None:
    with pytest.raises(ModelRejected, match="kernel"):
        build_model("audio_conv_ae", {"depth": 6, "kernel_size": 400}, (2048,))
    with pytest.raises(ModelRejected, match="input"):
        build_model("conv2d_ae", {}, (2048,))
    with pytest.raises(ModelRejected):
        build_model("vae", {}, (64, 3))


def test_device_is_an_argument() -> None:
    model = build_model("bounded_ae", {"latent": 2, "depth": 2}, (16,), device=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in model.parameters())
