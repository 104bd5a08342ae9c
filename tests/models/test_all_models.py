"""Every registered model: build small, train one step, round-trip through its artifact."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from samplegen.dsp.config import CodecConfig
from samplegen.models.artifact import load_model, save_model
from samplegen.models.base import InnerModel
from samplegen.models.combined import CombinedModel
from samplegen.models.registry import build_model, model_names

STFT = (65, 12)
WAVE = (2048,)
FLAT = (64,)

SMALL_CONV = {"layers": 3, "kernels": 4, "kernel_size": 4, "activation": "relu"}
SMALL_HARMONIC = {
    "frame_latent": 4,
    "hidden": 16,
    "harmonics": 8,
    "noise_bands": 8,
    "n_fft": 256,
    "hop": 128,
}
SMALL_VAE = {"latent": 3, "depth": 2, "ratio": 0.5, "warmup": "linear", "free_bits": 0.1}

CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("conv2d_ae", {"layers": 3, "kernels": 4, "kernel_size": 4}, STFT),
    ("conv2d_ae", {**SMALL_CONV, "output_activation": "sigmoid"}, STFT),
    ("frame_ae", {"frame_latent": 4, "hidden": 16, "depth": 2, "context": 3}, STFT),
    ("frame_ae", {"frame_latent": 4, "depth": 1, "context": 1, "activation": "none"}, STFT),
    ("frame_ae", {"frame_latent": 4, "hidden": 8, "output_activation": "clamp_st"}, STFT),
    ("mlp_ae", {"hidden": 4, "depth": 2}, STFT),
    ("mlp_ae", {"hidden": 4, "depth": 2, "teacher_forcing": True}, STFT),
    ("rnn_ae", {"cell": "rnn", "hidden": 4, "encode_depth": 1, "decode_depth": 1}, STFT),
    ("rnn_ae", {"cell": "gru", "hidden": 4, "encode_depth": 2, "decode_depth": 1}, STFT),
    ("rnn_ae", {"cell": "lstm", "hidden": 4, "encode_depth": 1, "decode_depth": 2}, STFT),
    ("audio_conv_ae", {"channels": 4, "kernel_size": 16}, WAVE),
    ("audio_conv_ae", {"channels": 4, "kernel_size": 16, "activation": "leaky_relu"}, WAVE),
    ("audio_conv_ae", {"channels": 4, "kernel_size": 16, "spectral_weight": 10.0}, WAVE),
    ("harmonic_ae", SMALL_HARMONIC, WAVE),
    ("vae", SMALL_VAE, FLAT),
    ("vae", {"latent": 3, "depth": 3, "warmup": "cyclical", "warmup_epochs": 4}, FLAT),
    (
        "vae",
        {**SMALL_VAE, "decoder": "frames", "frames": 8, "frame_hidden": 16, "anchor_epochs": 2},
        FLAT,
    ),
    (
        "vae",
        {
            **SMALL_VAE,
            "decoder": "frames",
            "frames": 8,
            "frame_hidden": 16,
            "frame_activation": "silu",
            "time_frequencies": 4,
        },
        FLAT,
    ),
    ("bounded_ae", {"latent": 3, "depth": 2}, FLAT),
    ("vq_vae", {"n_latents": 2, "code_dim": 4, "n_codes": 8, "depth": 2, "dead_after": 1}, FLAT),
    (
        "combined",
        {
            "outer": "conv2d_ae",
            "outer_hparams": SMALL_CONV,
            "inner": "vae",
            "inner_hparams": SMALL_VAE,
        },
        STFT,
    ),
    (
        "combined",
        {
            "outer": "audio_conv_ae",
            "outer_hparams": {"channels": 4, "kernel_size": 16},
            "inner": "vq_vae",
            "inner_hparams": {"n_latents": 2, "code_dim": 4, "n_codes": 8, "depth": 2},
        },
        WAVE,
    ),
    (
        "combined",
        {
            "outer": "harmonic_ae",
            "outer_hparams": SMALL_HARMONIC,
            "inner": "vae",
            "inner_hparams": SMALL_VAE,
        },
        WAVE,
    ),
    (
        "combined",
        {
            "outer": "rnn_ae",
            "outer_hparams": {"hidden": 3, "encode_depth": 1, "decode_depth": 1},
            "inner": "bounded_ae",
            "inner_hparams": {"latent": 2, "depth": 2},
        },
        STFT,
    ),
]


def _input(shape: tuple[int, ...], batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if shape == WAVE:
        return torch.rand(batch, *shape, generator=g) * 2 - 1
    if shape == FLAT:
        return torch.randn(batch, *shape, generator=g)
    return torch.rand(batch, *shape, generator=g)


def test_every_registered_model_has_a_case() -> None:
    assert set(model_names()) == {name for name, _, _ in CASES}


@pytest.mark.parametrize(("name", "hparams", "shape"), CASES, ids=lambda v: str(v)[:40])
def test_model_trains_and_round_trips(
    name: str, hparams: dict[str, Any], shape: tuple[int, ...], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = build_model(name, hparams, shape, device="cpu")
    assert model.num_params() > 0
    assert model.compression == pytest.approx(math.prod(shape) / math.prod(model.latent_shape))
    x = _input(shape, 4, seed=1)

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if isinstance(model, InnerModel) and model.anchor_epochs():
        start = model.anchor_loss(x, model.anchor_targets(x))
        assert torch.isfinite(start)
        start.backward()
        opt.step()
    for epoch in range(2):
        out = model(x)
        assert out.recon.shape == x.shape
        loss = model.loss(x, out, epoch=epoch)
        assert torch.isfinite(loss.total) and torch.isfinite(loss.recon)
        assert all(math.isfinite(v) for v in loss.metrics.values() if v == v)
        opt.zero_grad()
        loss.total.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
        opt.step()

    model.eval()
    with torch.no_grad():
        z = model.encode(x)
        assert tuple(z.shape[1:]) == model.latent_shape
        assert model.decode(z).shape == x.shape
        before = model(x).recon

    codec = CodecConfig(representation="wave") if shape == WAVE else CodecConfig()
    save_model(tmp_path / "m", model, codec=codec, dataset_fingerprint="abc", metrics={"loss": 1.5})
    loaded = load_model(tmp_path / "m")
    assert loaded.codec == codec
    assert loaded.meta.name == name and loaded.meta.metrics == {"loss": 1.5}
    assert not loaded.model.training
    with torch.no_grad():
        after = loaded.model(x).recon
    assert torch.equal(before, after)

    assert isinstance(model, CombinedModel) == (name == "combined")
    inner = model.inner if isinstance(model, CombinedModel) else model
    if isinstance(inner, InnerModel):
        g = torch.Generator().manual_seed(3)
        prior = inner.sample_prior(5, temperature=0.5, generator=g)
        assert tuple(prior.shape) == (5, *inner.latent_shape)
        stats = inner.latent_stats(
            model.outer.encode(x).flatten(1).detach()
            if isinstance(model, CombinedModel)
            else _input(inner.input_shape, 6, 2)
        )
        assert 0 <= stats.active_units <= math.prod(inner.latent_shape)
    if name == "combined":
        combined = loaded.model
        assert isinstance(combined, CombinedModel)
        with torch.no_grad():
            sounds = combined.sample(3, generator=torch.Generator().manual_seed(4))
        assert sounds.shape == (3, *shape)
        assert combined.compression == pytest.approx(
            combined.outer.compression * combined.inner.compression
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("name", "hparams", "shape"), CASES, ids=lambda v: str(v)[:40])
def test_model_runs_on_cuda_like_on_cpu(
    name: str, hparams: dict[str, Any], shape: tuple[int, ...], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = build_model(name, hparams, shape, device="cpu")
    x = _input(shape, 4, seed=1)
    model.eval()
    with torch.no_grad():
        expected = model(x).recon
    codec = CodecConfig(representation="wave") if shape == WAVE else CodecConfig()
    save_model(tmp_path / "m", model, codec=codec, dataset_fingerprint="abc", metrics={})
    gpu = load_model(tmp_path / "m", device="cuda").model
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    with torch.no_grad():
        got = gpu(x.cuda()).recon
    assert got.device.type == "cuda"
    # TF32 convolutions and reordered reductions: close, not bit-equal.
    torch.testing.assert_close(got.cpu(), expected, rtol=2e-2, atol=2e-3)

    # A training step under bf16 autocast, as Trainer(amp=True) takes it.
    gpu.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = gpu(x.cuda())
        loss = gpu.loss(x.cuda(), out, epoch=1)
    loss.total.backward()
    assert torch.isfinite(loss.total)
    grads = [p.grad for p in gpu.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
