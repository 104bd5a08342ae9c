"""The PCA reference: exact on what it can span, hand-checkable units, end to end through a decoder."""

from __future__ import annotations

import numpy as np
import pytest

from samplegen.platform.pca import fit_pca, pca_reference, pca_reference_decoded


def _data(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def test_full_rank_pca_reconstructs_training_data() -> None:
    train = _data(12, (5, 7), 0)
    ref = pca_reference(train, _data(4, (5, 7), 1), n_components=50)
    assert ref["n_components"] == 50
    assert ref["n_components_used"] == 11  # centred data of 12 rows spans 11 dimensions
    assert ref["train"]["mean_loss"] == pytest.approx(0.0, abs=1e-9)
    assert ref["train"]["rms_percent"] == pytest.approx(0.0, abs=1e-3)
    assert ref["explained_variance_ratio"] == pytest.approx(1.0)
    # Held-out random data is not in the span: its error stays well above zero.
    assert ref["eval"]["mean_loss"] > 0.1


def test_loss_and_rms_match_a_hand_computation() -> None:
    # Four points on a line in 2-D plus one off it: one component keeps the line exactly.
    train = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    held = np.array([[1.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    ref = pca_reference(train, held, n_components=1)
    assert ref["train"]["mean_loss"] == pytest.approx(0.0, abs=1e-12)
    # (1, 2) is 1/sqrt(2) away from the line y = x: squared error 0.5; (0, 0) lies on it: 0.
    assert ref["eval"]["max_loss"] == pytest.approx(0.5)
    assert ref["eval"]["min_loss"] == pytest.approx(0.0, abs=1e-12)
    assert ref["eval"]["mean_loss"] == pytest.approx(0.25)
    assert ref["eval"]["rms_percent"] == pytest.approx(100.0 * np.sqrt(0.25 / 2))
    assert ref["values_per_sample"] == 2


def test_more_components_never_fit_training_data_worse() -> None:
    train = _data(20, (30,), 2)
    losses = [pca_reference(train, train[:3], k)["train"]["mean_loss"] for k in (1, 3, 8, 19)]
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] == pytest.approx(0.0, abs=1e-9)


def test_fit_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_components"):
        fit_pca(_data(5, (3,), 0), 0)
    with pytest.raises(ValueError, match="at least 2"):
        fit_pca(_data(1, (3,), 0), 1)
    fit = fit_pca(_data(5, (3,), 0), 2)
    with pytest.raises(ValueError, match="values"):
        fit.project(_data(2, (4,), 0))


def test_decoded_reference_is_measured_in_the_decoder_units() -> None:
    # A fixed linear "outer decoder" from 4 latent values to 6 output values.
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((4, 6))

    def decode(z: np.ndarray) -> np.ndarray:
        return z.reshape(z.shape[0], -1) @ weights

    train_z = _data(10, (2, 2), 4)
    eval_z = _data(3, (2, 2), 5)
    train_target = decode(train_z)
    eval_target = decode(eval_z) + 0.5  # a constant offset of 0.5 on each of 6 values
    ref = pca_reference_decoded(
        train_z, eval_z, train_target, eval_target, n_components=4, decode=decode, batch_size=4
    )
    assert ref["encoded"]["values_per_sample"] == 4
    assert ref["end_to_end"]["values_per_sample"] == 6
    # Four components span all four latent values: the projection is exact, so end to end the
    # training error is zero and the eval error is the offset: 6 * 0.5**2 = 1.5 per sample.
    assert ref["encoded"]["train"]["mean_loss"] == pytest.approx(0.0, abs=1e-9)
    assert ref["end_to_end"]["train"]["mean_loss"] == pytest.approx(0.0, abs=1e-6)
    assert ref["end_to_end"]["eval"]["mean_loss"] == pytest.approx(1.5, rel=1e-5)
    assert ref["end_to_end"]["eval"]["rms_percent"] == pytest.approx(50.0, rel=1e-5)
