"""Outer models against the original's numbers, full output coverage, silence, dead codes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samplegen.models.audio_conv_ae import AudioConvAE
from samplegen.models.registry import build_model, count_params
from samplegen.models.vq_vae import VQVAE


def test_conv2d_ae_original_best_parameter_count() -> None:
    model = build_model("conv2d_ae", {"layers": 5, "kernels": 20, "kernel_size": 4}, (1025, 83))
    assert model.num_params() == 13_621
    # The encoder zero-pads odd lengths instead of dropping the last bin: 64 rows, not 63.
    assert model.latent_shape == (20, 64, 5)
    assert 13.0 < model.compression < 13.6


def test_conv2d_ae_covers_every_bin_and_frame() -> None:
    torch.manual_seed(0)
    model = build_model("conv2d_ae", {}, (1025, 87))
    x = torch.rand(2, 1025, 87, requires_grad=True)
    recon = model(x).recon
    assert recon.shape == (2, 1025, 87)
    # The original's top 14 bins were always zero; here they depend on the input...
    y = torch.rand(2, 1025, 87)
    assert not torch.allclose(recon[:, -14:], model(y).recon[:, -14:])
    # ...and the top bin and last frame of the input reach the latent.
    (grad,) = torch.autograd.grad(model.encode(x).square().sum(), x)
    assert grad[:, -1, :].abs().sum() > 0
    assert grad[:, :, -1].abs().sum() > 0
    (grad,) = torch.autograd.grad(recon[:, -1, :].sum() + recon[:, :, -1].sum(), x)
    assert grad.abs().sum() > 0


def test_reference_parameter_counts() -> None:
    assert count_params("audio_conv_ae", {}, (88_200,)) == 134_570
    model = build_model("audio_conv_ae", {}, (88_200,))
    assert model.plan == [(40, 16), (28, 11), (20, 8)]
    assert model.latent_shape == (37, 61)
    assert round(model.compression, 1) == 39.1
    assert abs(count_params("mlp_ae", {"hidden": 35, "depth": 3}, (1025, 87)) - 7.1e6) < 0.05e6
    assert abs(count_params("rnn_ae", {"hidden": 30}, (1025, 87)) - 3.2e6) < 0.05e6


def test_audio_conv_ae_survives_silence() -> None:
    model = build_model("audio_conv_ae", {"channels": 4, "kernel_size": 16}, (2048,))
    assert isinstance(model, AudioConvAE)
    with torch.no_grad():
        for conv in model.encoder:
            assert isinstance(conv, nn.Conv1d) and conv.bias is not None
            conv.bias.zero_()
    x = torch.zeros(2, 2048, requires_grad=True)
    out = model(x)
    assert torch.isfinite(out.latent).all() and torch.isfinite(out.recon).all()
    model.loss(x, out).total.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mlp_ae_decode_is_autoregressive() -> None:
    torch.manual_seed(0)
    model = build_model("mlp_ae", {"hidden": 3, "depth": 2, "teacher_forcing": True}, (9, 6))
    z = torch.randn(1, 3, 6)
    full = model.decode(z)
    z2 = z.clone()
    z2[:, :, 0] += 1.0
    # Changing frame 0's code changes later frames through the fed-back previous frame.
    assert not torch.allclose(full[:, :, 3:], model.decode(z2)[:, :, 3:])


def test_vq_vae_revives_dead_codes() -> None:
    torch.manual_seed(0)
    model = build_model(
        "vq_vae", {"n_latents": 1, "code_dim": 2, "n_codes": 6, "depth": 1, "dead_after": 2}, (4,)
    )
    assert isinstance(model, VQVAE)
    model.train()
    x = torch.randn(16, 4)
    before = model.codebook.detach().clone()
    model(x)
    used_first = model.idle_steps == 0
    assert not used_first.all()  # the untrained encoder maps everything to a few codes
    model(x)
    model(x)
    changed = (model.codebook.detach() != before).any(1)
    # Codes idle for two steps were replaced by encoder outputs of the batch; used ones were not.
    assert changed.any() and not (changed & used_first).any()
    assert torch.equal(changed, ~used_first)
    stats = model.latent_stats(x)
    assert 1.0 <= stats.extra["perplexity"] <= 6.0
    assert 0 < stats.extra["codebook_usage"] <= 1.0


def test_audio_conv_ae_spectral_term_prefers_the_right_spectrum_in_any_phase() -> None:
    hp = {"channels": 4, "kernel_size": 16, "spectral_weight": 100.0}
    model = build_model("audio_conv_ae", hp, (4096,))
    t = torch.arange(4096) / 4096.0
    x = (0.5 * torch.sin(2 * torch.pi * 220 * t)).unsqueeze(0)
    shifted = (0.5 * torch.sin(2 * torch.pi * 220 * t + 1.7)).unsqueeze(0)  # same tone, new phase
    silent = torch.zeros_like(x)

    def loss_of(recon: torch.Tensor) -> tuple[float, float, float]:
        out = model(x)
        loss = model.loss(x, type(out)(recon=recon, latent=out.latent))
        return float(loss.total), float(loss.recon), loss.metrics["spectral"]

    total_shift, sse_shift, spec_shift = loss_of(shifted)
    total_silent, sse_silent, spec_silent = loss_of(silent)
    # SSE alone prefers silence to the phase-shifted tone; the spectral term does not.
    assert sse_silent < sse_shift
    assert spec_shift < 0.25 * spec_silent
    assert total_shift < total_silent
    assert total_shift == pytest.approx(sse_shift + 100.0 * spec_shift, rel=1e-5)
    plain = build_model("audio_conv_ae", {"channels": 4, "kernel_size": 16}, (4096,))
    assert "spectral" not in plain.loss(x, plain(x)).metrics
    with pytest.raises(ValueError, match="spectral_weight"):
        build_model("audio_conv_ae", {**hp, "spectral_weight": -1.0}, (4096,))


def test_the_straight_through_clamp_outputs_the_clamp_and_lets_an_undershoot_learn() -> None:
    from samplegen.models.layers import make_output_activation

    raw = torch.tensor([-0.5, -0.5, 0.3, 1.4], requires_grad=True)
    target = torch.tensor([0.2, 0.0, 0.1, 0.9])
    # d/d raw of (y - t)^2 with y = clamp(raw). A hard clamp passes nothing outside [0, 1], so the
    # undershot quiet bin (target 0.2) can never rise; straight through it can, and the bin whose
    # target is 0 gets no push either way.
    for name, expected in (("clamp", [0.0, 0.0, 0.4, 0.0]), ("clamp_st", [-0.4, 0.0, 0.4, 0.2])):
        out = make_output_activation(name)(raw)
        assert out.tolist() == pytest.approx([0.0, 0.0, 0.3, 1.0])
        (grad,) = torch.autograd.grad(((out - target) ** 2).sum(), raw)
        assert grad.tolist() == pytest.approx(expected)
