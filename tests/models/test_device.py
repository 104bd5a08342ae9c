"""A device that is not there is refused in one line, by every command that loads a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samplegen.cli.main import main
from samplegen.dsp.config import CodecConfig
from samplegen.models.artifact import load_model, load_model_files, model_files, save_model
from samplegen.models.device import DeviceError, torch_device
from samplegen.models.registry import build_model

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_a_device_is_a_torch_device() -> None:
    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="--device 'gpu0': not a torch device"):
        torch_device("gpu0")


@no_cuda
def test_cuda_without_cuda_is_refused_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = save_model(
        tmp_path / "vae", build_model("vae", {"latent": 3}, (32,)), codec=CodecConfig()
    )
    with pytest.raises(DeviceError, match="--device cuda: torch sees no CUDA device"):
        load_model(saved, device="cuda")
    # The commands that took torch's assertion as a traceback.
    for argv in (
        ["generate", "random", str(saved), "--device", "cuda", "--out", str(tmp_path / "g")],
        ["export", str(saved), "--device", "cuda", "--out", str(tmp_path / "e")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "torch sees no CUDA device" in err[0], err


def test_a_models_files_load_anywhere(tmp_path: Path) -> None:
    model = build_model("vae", {"latent": 3}, (32,))
    files = model_files(save_model(tmp_path / "vae", model, codec=CodecConfig()))
    assert sorted(files) == ["config.json", "weights.safetensors"]
    loaded = load_model_files(files)
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[name]), name
