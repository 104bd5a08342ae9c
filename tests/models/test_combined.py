"""The combined model trained on its outer encodings computed once (TrainsOnEncodings)."""

from __future__ import annotations

import numpy as np
import torch

from samplegen.models.base import InnerModel
from samplegen.models.combined import CombinedModel, TrainsOnEncodings
from samplegen.models.registry import build_model

VAE = {"latent": 3, "depth": 2, "ratio": 0.5, "beta": 0.1}


def _combined(refine_steps: int = 0) -> CombinedModel:
    torch.manual_seed(0)
    outer = build_model("frame_ae", {"frame_latent": 4, "hidden": 16}, (24, 6))
    inner = build_model("vae", {**VAE, "refine_steps": refine_steps}, (24,))
    assert isinstance(inner, InnerModel)
    return CombinedModel.from_parts(outer, inner)


def test_rows_hold_the_outer_encoding_beside_the_input() -> None:
    combined = _combined().eval()
    x = np.random.default_rng(0).random((70, 24, 6), dtype=np.float32)
    wrapped = TrainsOnEncodings(combined)
    rows = wrapped.rows([x[:50], x[50:]], batch=16)
    assert rows.shape == (70, 24 + 24 * 6) and rows.dtype == np.float32
    flat, back = wrapped.split(torch.from_numpy(rows))
    with torch.no_grad():
        want = combined.outer.encode(torch.from_numpy(x)).flatten(1)
    torch.testing.assert_close(flat, want)
    assert torch.equal(back, torch.from_numpy(x))
    assert list(wrapped.state_dict()) == list(combined.state_dict())


def test_training_on_rows_takes_the_same_steps_as_training_the_combined_model() -> None:
    x = torch.rand(16, 24, 6)
    direct, wrapped_model = _combined(), _combined()
    wrapped = TrainsOnEncodings(wrapped_model)
    rows = torch.from_numpy(wrapped.rows([x.numpy()]))
    for model in (direct, wrapped_model):
        for p in model.outer.parameters():
            p.requires_grad_(False)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (direct, wrapped)]
    for step in range(3):
        direct.train()
        wrapped.train()
        assert wrapped_model.training and not wrapped.outer.training
        torch.manual_seed(step)
        loss_a = direct.loss(x, direct(x), epoch=1)
        torch.manual_seed(step)
        loss_b = wrapped.loss(rows, wrapped(rows), epoch=1)
        torch.testing.assert_close(loss_b.total, loss_a.total)
        for opt, loss in zip(opts, (loss_a, loss_b), strict=True):
            opt.zero_grad()
            loss.total.backward()
            opt.step()
    for name, value in direct.state_dict().items():
        torch.testing.assert_close(wrapped_model.state_dict()[name], value, msg=name)


def test_evaluation_on_rows_refines_codes_as_the_combined_model_does() -> None:
    combined = _combined(refine_steps=20)
    x = torch.rand(8, 24, 6)
    wrapped = TrainsOnEncodings(combined)
    rows = torch.from_numpy(wrapped.rows([x.numpy()]))
    wrapped.eval()
    assert not combined.training
    out = wrapped(rows)
    want = combined(x)
    torch.testing.assert_close(out.latent, want.latent)
    assert out.mu is not None and not torch.equal(out.latent, out.mu)  # refined, not the mean
    torch.testing.assert_close(wrapped.loss(rows, out).recon, combined.loss(x, want).recon)
