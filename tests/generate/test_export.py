"""Export for plug-in hosts: onnxruntime / TorchScript agree with PyTorch on encoder and decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from samplegen.cli.main import main
from samplegen.dsp.codec import magnitude
from samplegen.generate import sounds as S
from samplegen.generate.export import run_onnx, run_torchscript
from samplegen.generate.latent import load_space

if TYPE_CHECKING:
    from samplegen.dsp.config import CodecConfig
    from samplegen.models.code_distribution import CodeDistribution
    from tests.generate.conftest import NoteMaker, TrainedModels


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(trained_models: TrainedModels, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / fmt
    assert main(["export", str(trained_models.combined), "--format", fmt, "--out", str(out)]) == 0
    side = json.loads((out / "export.json").read_text())
    assert side["encoder"]["input"]["shape"] == ["batch", 129, 63]
    assert side["decoder"]["input"]["shape"] == ["batch", 3]
    assert side["decoder"]["output"]["name"] == "magnitude"
    assert side["codec"]["n_fft"] == 256 and side["latent_stats"]["source"] == "prior N(0, 1)"
    assert side["code_distribution"] is None
    run = run_onnx if fmt == "onnx" else run_torchscript

    space = load_space(trained_models.combined)
    inputs = S.load_inputs(trained_models.wavs[:5], space.codec)  # a batch size not used at export
    x = np.stack([i.encoded for i in inputs])
    z_ref = space.encode(x)
    z = run(out / side["encoder"]["file"], x)
    np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-5)

    latents = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    mag_ref = magnitude(space.decode(latents), space.codec)
    mag = run(out / side["decoder"]["file"], latents)
    assert mag.shape == (7, 129, 63)
    np.testing.assert_allclose(mag, mag_ref, rtol=1e-4, atol=1e-5)
    assert max(side["check"]["max_abs_diff_vs_pytorch"].values()) < 1e-4


def test_exporting_again_in_another_format_leaves_only_what_the_sidecar_names(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    out = tmp_path / "plugin"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    base = ["export", str(trained_models.combined), "--out", str(out)]
    assert main(base) == 0
    assert {p.name for p in out.iterdir()} == {
        "encoder.onnx",
        "decoder.onnx",
        "export.json",
        "notes.txt",
    }
    assert main([*base, "--format", "torchscript"]) == 0
    # The ONNX graphs of the first export used to stay beside a sidecar describing TorchScript.
    assert {p.name for p in out.iterdir()} == {
        "encoder.pt",
        "decoder.pt",
        "export.json",
        "notes.txt",
    }
    assert json.loads((out / "export.json").read_text())["format"] == "torchscript"


def test_export_plain_outer_autoencoder_onnx(trained_models: TrainedModels, tmp_path: Path) -> None:
    out = tmp_path / "outer"
    assert main(["export", str(trained_models.outer), "--out", str(out)]) == 0
    side = json.loads((out / "export.json").read_text())
    assert side["decoder"]["input"]["shape"] == ["batch", 128]
    assert side["latent_stats"] is None  # not variational, nothing stored: the sidecar says so
    space = load_space(trained_models.outer)
    z = np.random.default_rng(1).standard_normal((2, 128)).astype(np.float32)
    with torch.no_grad():
        ref = magnitude(space.decode(z), space.codec)
    np.testing.assert_allclose(run_onnx(out / "decoder.onnx", z), ref, rtol=1e-4, atol=1e-5)


def test_waveform_model_generates_and_exports(
    tmp_path: Path, small_codec: CodecConfig, make_note: NoteMaker
) -> None:
    """A waveform model (no Griffin-Lim): generation writes audio, the ONNX decoder gives waves."""
    from samplegen.models.artifact import save_model
    from samplegen.models.registry import build_model

    codec = small_codec.replace(representation="wave")
    torch.manual_seed(0)
    model = build_model(
        "audio_conv_ae", {"depth": 2, "channels": 4, "kernel_size": 16}, codec.shape
    )
    model_dir = save_model(tmp_path / "wave_model", model.eval(), codec=codec)
    import soundfile as sf

    for k, f in enumerate((220.0, 330.0)):
        sf.write(tmp_path / f"n{k}.wav", 0.5 * make_note(f, 0.5, 3.0, 16_000, 8000), 16_000)
    out = tmp_path / "int"
    argv = ["generate", "interpolate", model_dir, tmp_path / "n0.wav", tmp_path / "n1.wav"]
    assert main([*map(str, argv), "--steps", "3", "--out", str(out)]) == 0
    data, sr = sf.read(out / "step01_t0.500.wav")
    assert sr == 16_000 and data.shape == (8000,) and np.abs(data).max() <= 1.0
    assert (out / "step01_t0.500.png").is_file()

    assert main(["export", str(model_dir), "--out", str(tmp_path / "exp")]) == 0
    side = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert side["decoder"]["output"]["name"] == "waveform"
    space = load_space(model_dir)
    z = np.random.default_rng(2).standard_normal((2, space.dim)).astype(np.float32)
    from samplegen.dsp.codec import inverse_mu_law

    ref = inverse_mu_law(space.decode(z), codec.mu)
    wave = run_onnx(tmp_path / "exp" / "decoder.onnx", z)
    assert wave.shape == (2, 8000)
    np.testing.assert_allclose(wave, ref, rtol=1e-4, atol=1e-5)


def test_export_carries_the_training_codes_mixture(
    fitted_model: tuple[Path, CodeDistribution], tmp_path: Path
) -> None:
    model, fitted = fitted_model
    assert main(["export", str(model), "--format", "torchscript", "--out", str(tmp_path)]) == 0
    side = json.loads((tmp_path / "export.json").read_text())
    assert side["code_distribution"] == json.loads(json.dumps(fitted.to_dict()))
    assert side["latent_stats"]["source"].startswith("training codes")
    np.testing.assert_allclose(side["latent_stats"]["mean"], fitted.mean, rtol=1e-6)


def test_a_harmonic_model_is_refused_onnx_in_one_line_and_exports_as_torchscript(
    tmp_path: Path, small_codec: CodecConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    from samplegen.models.artifact import save_model
    from samplegen.models.registry import build_model

    codec = small_codec.replace(representation="wave")
    hp = {
        "frame_latent": 3,
        "hidden": 8,
        "harmonics": 4,
        "noise_bands": 4,
        "n_fft": 256,
        "hop": 128,
    }
    torch.manual_seed(0)
    model_dir = save_model(
        tmp_path / "harmonic", build_model("harmonic_ae", hp, codec.shape), codec=codec
    )
    # Before: 250 lines of the exporter's graph, then "STFT does not currently support complex".
    assert main(["export", str(model_dir), "--out", str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no ONNX export of harmonic_ae" in err[0], err
    assert "--format torchscript" in err[0] and not (tmp_path / "onnx" / "encoder.onnx").exists()
    out = tmp_path / "ts"
    assert main(["export", str(model_dir), "--format", "torchscript", "--out", str(out)]) == 0
    side = json.loads((out / "export.json").read_text())
    assert side["format"] == "torchscript"
    assert max(side["check"]["max_abs_diff_vs_pytorch"].values()) < 1e-3
