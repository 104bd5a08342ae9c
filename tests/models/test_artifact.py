"""Model directories: errors a user can cause, and codec refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from samplegen.dsp.config import CodecConfig
from samplegen.errors import SamplegenError
from samplegen.models.artifact import (
    ArtifactError,
    CodecMismatch,
    check_codec,
    load_model,
    save_model,
)
from samplegen.models.base import InnerModel
from samplegen.models.combined import CombinedModel
from samplegen.models.registry import build_model

HP = {"latent": 3, "depth": 2}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model = build_model("vae", HP, (32,))
    return save_model(tmp_path / "vae", model, codec=CodecConfig(), metrics={"loss": 2.0})


def test_directory_layout_and_overwrite(saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "weights.safetensors"]
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["model"] == "vae" and cfg["hparams"]["latent"] == 3
    assert cfg["codec"] == CodecConfig().to_dict() and cfg["format_version"] == 1
    # Saving again replaces the directory and leaves no temporaries behind.
    save_model(saved, build_model("vae", HP, (32,)), codec=CodecConfig())
    assert sorted(p.name for p in saved.parent.iterdir()) == ["vae"]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_missing_weights(saved: Path) -> None:
    (saved / "weights.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing weights"):
        load_model(saved)


def test_corrupted_weights(saved: Path) -> None:
    data = (saved / "weights.safetensors").read_bytes()
    (saved / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupted"):
        load_model(saved)
    (saved / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ArtifactError, match="corrupted"):
        load_model(saved)


def _edit(saved: Path, **changes: object) -> None:
    cfg = json.loads((saved / "config.json").read_text())
    cfg.update(changes)
    (saved / "config.json").write_text(json.dumps(cfg))


def test_edited_config_shape_mismatch(saved: Path) -> None:
    _edit(saved, hparams={**HP, "latent": 4})
    with pytest.raises(ArtifactError, match="does not match.*shape"):
        load_model(saved)


def test_edited_config_missing_tensors(saved: Path) -> None:
    _edit(saved, hparams={**HP, "depth": 3})
    with pytest.raises(ArtifactError, match="missing tensors|unexpected tensors"):
        load_model(saved)


def test_unknown_model_name_and_bad_json(saved: Path) -> None:
    _edit(saved, model="transformer")
    with pytest.raises(ArtifactError, match="transformer"):
        load_model(saved)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="config.json"):
        load_model(saved)


def test_codec_mismatch_is_refused(saved: Path) -> None:
    loaded = load_model(saved)
    check_codec(loaded, CodecConfig())
    with pytest.raises(CodecMismatch, match="mu: model 8.0 != dataset 16.0"):
        check_codec(loaded, CodecConfig(mu=16.0))


def test_combined_from_trained_parts_round_trips(tmp_path: Path) -> None:
    outer = build_model("conv2d_ae", {"layers": 2, "kernels": 3}, (33, 10))
    inner = build_model(
        "vae", HP, (outer.latent_shape[0] * outer.latent_shape[1] * outer.latent_shape[2],)
    )
    assert isinstance(inner, InnerModel)
    combined = CombinedModel.from_parts(outer, inner).eval()
    path = save_model(tmp_path / "c", combined, codec=CodecConfig())
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["hparams"]["outer"] == "conv2d_ae" and cfg["hparams"]["inner_hparams"]["latent"] == 3
    loaded = load_model(path)
    assert {k.split(".")[0] for k in loaded.model.state_dict()} == {"outer", "inner"}
    z = torch.randn(2, 3)
    with torch.no_grad():
        assert torch.equal(combined.decode(z), loaded.model.decode(z))
    too_small = build_model("vae", HP, (7,))
    assert isinstance(too_small, InnerModel)
    with pytest.raises(SamplegenError, match="inner input"):
        CombinedModel.from_parts(outer, too_small)


def test_a_path_that_is_not_a_model_is_never_replaced(tmp_path: Path) -> None:
    # A mistyped --out (train, finetune) used to turn a file into a model folder, or delete the
    # contents of a folder of other things.
    model = build_model("vae", HP, (32,))
    notes = tmp_path / "notes.txt"
    notes.write_text("important")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.wav").write_bytes(b"mine")
    for target in (notes, mine, notes / "model"):
        with pytest.raises(ArtifactError, match="refusing to replace it|is a file"):
            save_model(target, model, codec=CodecConfig())
    assert notes.read_text() == "important" and (mine / "a.wav").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]
    # An empty folder, or a model directory, is fine.
    (tmp_path / "empty").mkdir()
    assert (save_model(tmp_path / "empty", model, codec=CodecConfig()) / "config.json").is_file()
    save_model(tmp_path / "empty", model, codec=CodecConfig())
