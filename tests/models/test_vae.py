"""VAE figures on a constructed case, layer sizes, warm-up and free bits."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from samplegen.models.combined import CombinedModel
from samplegen.models.frame_decoder import TIME_FREQUENCIES, FrameDecoder
from samplegen.models.layers import interpolate_layer_sizes
from samplegen.models.registry import HParamError, ModelRejected, build_model, count_params
from samplegen.models.vae import VAE, kl_weight


def test_interpolate_layer_sizes_reference_example() -> None:
    assert interpolate_layer_sizes(6300, 7, 4, 0.25) == [6300, 1850, 1008, 443, 7]


def test_original_best_vae_parameter_count() -> None:
    assert count_params("vae", {"latent": 7, "depth": 4, "ratio": 0.25}, (6300,)) == 27_954_907


def _vae(hparams: Mapping[str, Any], input_shape: tuple[int, ...]) -> VAE:
    # build_model promises only a SampleModel; these tests reach into the VAE's own layers.
    model = build_model("vae", hparams, input_shape)
    assert isinstance(model, VAE)
    return model


def _frame_decoder(vae: VAE) -> FrameDecoder:
    assert isinstance(vae.decoder, FrameDecoder)
    return vae.decoder


def _constructed_vae(**hparams: float | int | str) -> VAE:
    # depth 1: sizes [4, 2]; the encoder is just fc_mu / fc_logvar on the input.
    vae = _vae({"latent": 2, "depth": 1, **hparams}, (4,))
    with torch.no_grad():
        vae.fc_mu.weight.zero_()
        vae.fc_mu.weight[0, 0] = 1.0  # mu_0 = x_0: varies across samples
        vae.fc_mu.bias.copy_(torch.tensor([0.0, 0.05]))  # mu_1 = 0.05: constant
        vae.fc_logvar.weight.zero_()
        vae.fc_logvar.bias.copy_(torch.tensor([math.log(0.5), 0.0]))
    return vae.eval()


X = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [2.0, 0, 0, 0]])
# Closed form: KL_d = mean_x 0.5 (mu^2 + sigma^2 - 1 - log sigma^2)
KL0 = 0.5 * ((1 + 1 + 4) / 3 + 0.5 - 1 - math.log(0.5))
KL1 = 0.5 * (0.05**2 + 1 - 1 - 0)


def test_kl_per_dim_and_active_units_match_closed_form() -> None:
    vae = _constructed_vae()
    stats = vae.latent_stats(X)
    assert stats.kl_per_dim is not None
    assert stats.kl_per_dim.tolist() == pytest.approx([KL0, KL1], rel=1e-5, abs=1e-6)
    # Var_x(mu_0) = 14/9 > 0.01, Var_x(mu_1) = 0: one active unit.
    assert stats.active_units == 1
    assert stats.std.tolist() == pytest.approx([math.sqrt(2 - 4 / 9), 0.0], abs=1e-5)
    out = vae(X)
    loss = vae.loss(X, out)
    assert loss.metrics["kl"] == pytest.approx(KL0 + KL1, rel=1e-5)
    assert loss.metrics["active_units"] == 1
    recon = ((out.recon - X) ** 2).sum(1).mean()
    assert float(loss.total.detach()) == pytest.approx(float(recon.detach()) + KL0 + KL1, rel=1e-5)


def test_free_bits_floor_each_dimension() -> None:
    vae = _constructed_vae(free_bits=0.5, beta=2.0)
    out = vae(X)
    loss = vae.loss(X, out)
    # dim 0 is above the floor, dim 1 (0.00125 nats) counts as 0.5.
    assert float((loss.total - loss.recon).detach()) == pytest.approx(2.0 * (KL0 + 0.5), rel=1e-5)


def test_kl_warmup_schedules() -> None:
    assert kl_weight("none", 0, 10) == 1.0
    assert kl_weight("linear", 0, 10) == 0.0
    assert kl_weight("linear", 5, 10) == 0.5
    assert kl_weight("linear", 30, 10) == 1.0
    # Epochs count from 1: each period of 10 starts at 0 and ends at full weight.
    assert [kl_weight("cyclical", e, 10) for e in (1, 3, 6, 10, 11)] == pytest.approx(
        [0.0, 0.4, 1.0, 1.0, 0.0]
    )
    assert kl_weight("cyclical", 13, 10) == pytest.approx(0.4)
    assert kl_weight("cyclical", 20, 10) == 1.0  # a 20-epoch run ends at full weight
    vae = _constructed_vae(warmup="linear", warmup_epochs=4)
    out = vae(X)
    loss = vae.loss(X, out, epoch=1)
    assert float((loss.total - loss.recon).detach()) == pytest.approx(0.25 * (KL0 + KL1), rel=1e-5)
    assert loss.metrics["kl_weight"] == 0.25


def test_refined_codes_fit_better_and_do_not_depend_on_the_batch() -> None:
    torch.manual_seed(0)
    hp = {"latent": 3, "depth": 2, "ratio": 0.5, "beta": 0.1}
    x = torch.rand(12, 40)
    plain = _vae(hp, (40,))
    opt = torch.optim.Adam(plain.parameters(), lr=1e-2)
    for _ in range(30):  # a little training, so the decoder means something
        out = plain(x)
        loss = plain.loss(x, out).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    plain.eval()
    refined = _vae({**hp, "refine_steps": 60}, (40,)).eval()
    refined.load_state_dict(plain.state_dict())
    for p in refined.parameters():
        p.grad = None

    def objective(model: VAE, z: torch.Tensor) -> torch.Tensor:
        return ((model.decode(z) - x).pow(2).sum(1) + 0.05 * z.pow(2).sum(1)).detach()

    with torch.no_grad():
        z0 = plain.encode(x)
    z1 = refined.encode(x)
    assert torch.equal(refined.encode_amortized(x), z0)
    assert (objective(refined, z1) < objective(refined, z0)).all()
    assert all(p.grad is None for p in refined.parameters())  # weights untouched
    torch.testing.assert_close(refined.encode(x[:5]), z1[:5], rtol=1e-4, atol=1e-5)
    out = refined(x)
    torch.testing.assert_close(out.latent, z1)
    assert (out.recon - x).pow(2).sum() < (plain(x).recon - x).pow(2).sum()
    refined.train()
    assert torch.equal(refined.encode(x), refined.encode_amortized(x))  # training never refines
    with pytest.raises(HParamError, match="refine_steps"):
        build_model("vae", {**hp, "refine_steps": -1}, (40,))


def test_a_combined_model_refines_its_codes_against_its_own_input() -> None:
    torch.manual_seed(0)
    x = torch.rand(10, 24, 6)
    outer = build_model("frame_ae", {"frame_latent": 4, "hidden": 16}, (24, 6))
    hp = {"latent": 3, "depth": 2, "ratio": 0.5, "beta": 0.1}
    plain = CombinedModel.from_parts(outer, _vae(hp, (24,)))
    opt = torch.optim.Adam(plain.inner.parameters(), lr=1e-2)
    for _ in range(30):
        loss = plain.loss(x, plain(x)).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    plain.eval()
    inner = _vae({**hp, "refine_steps": 60}, (24,))
    inner.load_state_dict(plain.inner.state_dict())
    refined = CombinedModel.from_parts(plain.outer, inner).eval()
    for p in refined.parameters():
        p.grad = None

    def in_input_domain(z: torch.Tensor) -> torch.Tensor:
        return ((refined.decode(z) - x).pow(2).flatten(1).sum(1) + 0.05 * z.pow(2).sum(1)).detach()

    z0 = refined.encode_amortized(x).detach()
    z_latent = inner.encode(refined.outer.encode(x).flatten(1))  # refined in the encoded space
    z = refined.encode(x)
    assert (in_input_domain(z) < in_input_domain(z0)).all()
    # The encoded-space fit is not the input-domain one: refining end to end does better there.
    assert in_input_domain(z).sum() < in_input_domain(z_latent).sum()
    torch.testing.assert_close(refined.encode(x[:4]), z[:4], rtol=1e-4, atol=1e-5)
    out = refined(x)
    torch.testing.assert_close(out.latent, z)
    torch.testing.assert_close(out.recon, refined.decode(z))
    assert out.mu is not None and torch.equal(out.mu.detach(), z0)
    assert all(p.grad is None for p in refined.parameters())
    refined.train()
    assert torch.equal(refined.encode(x), refined.encode_amortized(x))  # training never refines


def test_the_frame_decoder_writes_each_frame_into_the_outer_codes_layout() -> None:
    """Value v of frame t sits at v * frames + t (frame_ae's (values, frames) latent, flattened),
    and each frame depends only on the code and its own position."""
    torch.manual_seed(0)
    values, frames = 4, 6
    hp = {"latent": 3, "depth": 2, "ratio": 0.5, "decoder": "frames", "frames": frames}
    vae = _vae({**hp, "frame_hidden": 8}, (values * frames,)).eval()
    decoder = _frame_decoder(vae)
    z = torch.randn(2, 3)
    out = vae.decode(z).view(2, values, frames)
    per_frame = decoder.net(
        torch.cat([z[:, None, :].expand(2, frames, 3), decoder.time[None].expand(2, -1, -1)], 2)
    )
    torch.testing.assert_close(out, per_frame.transpose(1, 2))
    # The position features make frames of one code differ.
    assert not torch.allclose(out[..., 0], out[..., 1])
    # One frame's weights serve all frames: fewer weights than a plain decoder of the same depth.
    plain = _vae({**hp, "decoder": "mlp"}, (values * 50,))
    framed = _vae({**hp, "frames": 50, "frame_hidden": 8}, (values * 50,))
    last = _frame_decoder(framed).net[-1]
    assert isinstance(last, nn.Linear) and last.out_features == values
    assert sum(p.numel() for p in framed.decoder.parameters()) < sum(
        p.numel() for p in plain.decoder.parameters()
    )


def test_the_frame_decoders_activation_and_time_features_are_settings() -> None:
    values, frames = 4, 6
    hp = {"latent": 3, "depth": 2, "decoder": "frames", "frames": frames, "frame_hidden": 8}
    plain = _frame_decoder(_vae(hp, (values * frames,)))
    assert plain.time.shape == (frames, 2 * TIME_FREQUENCIES)
    assert [type(m) for m in plain.net if not isinstance(m, nn.Linear)] == [nn.ReLU] * 2
    smooth = _vae({**hp, "frame_activation": "silu", "time_frequencies": 3}, (values * frames,))
    smooth_decoder = _frame_decoder(smooth)
    assert [type(m) for m in smooth_decoder.net if not isinstance(m, nn.Linear)] == [nn.SiLU] * 2
    # Three sine/cosine pairs: the first layer reads the 3 latents and 6 position features.
    assert smooth_decoder.time.shape == (frames, 6)
    first = smooth_decoder.net[0]
    assert isinstance(first, nn.Linear) and first.in_features == 3 + 6
    # The k-th pair is sin and cos of k half-turns across the note: k = 1 ends at (0, -1).
    torch.testing.assert_close(smooth_decoder.time[-1, [0, 3]], torch.tensor([0.0, -1.0]))
    assert smooth.decode(torch.randn(2, 3)).shape == (2, values * frames)


def test_the_frame_decoder_names_what_is_wrong() -> None:
    with pytest.raises(HParamError, match="frames >= 1"):
        build_model("vae", {"decoder": "frames"}, (24,))
    with pytest.raises(HParamError, match="decoder 'conv'"):
        build_model("vae", {"decoder": "conv"}, (24,))
    with pytest.raises(ModelRejected, match="cannot split 24 values into 5 frames"):
        build_model("vae", {"decoder": "frames", "frames": 5}, (24,))
    with pytest.raises(HParamError, match="frame_activation 'swish'"):
        build_model("vae", {"decoder": "frames", "frames": 4, "frame_activation": "swish"}, (24,))
    with pytest.raises(HParamError, match="time_frequencies must be at least 1, got 0"):
        build_model("vae", {"decoder": "frames", "frames": 4, "time_frequencies": 0}, (24,))


def test_the_anchor_targets_are_the_rows_principal_components_at_unit_variance() -> None:
    g = torch.Generator().manual_seed(0)
    # 40 rows spanning 3 directions of 12, with very different spreads.
    x = (torch.randn(40, 3, generator=g) * torch.tensor([5.0, 2.0, 0.5])) @ torch.randn(
        3, 12, generator=g
    ) + 3.0
    vae = _vae({"latent": 3, "depth": 1, "anchor_epochs": 2}, (12,))
    assert vae.anchor_epochs() == 2
    t = vae.anchor_targets(x)
    assert t.shape == (40, 3)
    assert torch.allclose(t.std(0), torch.ones(3), atol=1e-4)
    assert torch.allclose(torch.corrcoef(t.T), torch.eye(3), atol=1e-4)
    # They span the rows: a linear map of the targets gives back every centred row.
    centred = x - x.mean(0)
    fit = t @ torch.linalg.lstsq(t, centred).solution
    assert torch.allclose(fit, centred, atol=1e-3)

    # More latents than the rows span: the extra targets are zero, not amplified rounding noise.
    wide = _vae({"latent": 5, "depth": 1, "anchor_epochs": 1}, (12,))
    t5 = wide.anchor_targets(x)
    assert torch.allclose(t5[:, :3].abs(), t.abs(), atol=1e-4)
    assert torch.equal(t5[:, 3:], torch.zeros(40, 2))
    assert torch.equal(wide.anchor_targets(torch.ones(6, 12)), torch.zeros(6, 5))


def test_a_vae_starts_at_random_unless_asked_and_names_a_bad_anchor_setting() -> None:
    assert _vae({"latent": 2, "depth": 1}, (4,)).anchor_epochs() == 0
    with pytest.raises(HParamError, match="anchor_epochs"):
        build_model("vae", {"latent": 2, "depth": 1, "anchor_epochs": -1}, (4,))
