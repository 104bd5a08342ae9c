"""Export a trained model for a plug-in host (e.g. a JUCE synthesizer): ONNX or TorchScript.

Two graphs, each with a dynamic batch axis:
- encoder: `encoded_input` (B, *codec.shape), the codec's representation of a peak-normalised note
  (STFT: mu-law magnitude in [0, 1]; wave: mu-law waveform in [-1, 1]) -> `latent` (B, D), the
  latent mean;
- decoder: `latent` (B, D) -> `magnitude` (B, bins, frames), linear STFT magnitude with peak about 1
  and the codec's floor applied (the host runs Griffin-Lim or its own phase reconstruction), or
  `waveform` (B, samples) in [-1, 1] for waveform models.
A JSON sidecar (`export.json`) describes files, names, shapes, codec settings, latent statistics and
the largest difference between the exported graphs and PyTorch measured at export time.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from samplegen.atomic import write_atomic
from samplegen.errors import SamplegenError
from samplegen.generate.io import write_json
from samplegen.generate.latent import GenerationError, LatentSpace, load_space
from samplegen.models.base import SampleModel

FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SIDECAR = "export.json"
OPSET = 17


class ExportError(SamplegenError):
    """The model cannot be exported as asked; the message says why."""


class EncoderGraph(nn.Module):
    """encoded input (B, *shape) -> flat latent mean (B, D)."""

    def __init__(self, model: SampleModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A graph holds no optimiser: codes a model refines per input are exported unrefined.
        return self.model.encode_amortized(x).flatten(1)


class DecoderGraph(nn.Module):
    """flat latent (B, D) -> linear STFT magnitude (B, bins, frames) or waveform (B, samples)."""

    def __init__(self, model: SampleModel, latent_shape: tuple[int, ...], codec: Any) -> None:
        super().__init__()
        self.model = model
        self.latent_shape = tuple(latent_shape)
        self.stft = codec.representation == "stft"
        self.scale = float(math.log1p(codec.mu))
        self.mu = float(codec.mu)
        self.floor = float(codec.floor_amplitude)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.model.decode(z.reshape((z.shape[0], *self.latent_shape)))
        if self.stft:
            y = y.clamp(0.0, 1.0)
            # exp(x) - 1 rather than expm1: ONNX has no expm1 (the difference is far below 1e-6).
            lin = (torch.exp(y * self.scale) - 1.0) / self.mu
            return torch.where(lin < self.floor, torch.zeros_like(lin), lin)
        y = y.clamp(-1.0, 1.0)
        return torch.sign(y) * (torch.exp(y.abs() * self.scale) - 1.0) / self.mu


@dataclass(frozen=True)
class ExportResult:
    """Files written and the measured agreement between the export and PyTorch."""

    directory: Path
    encoder: Path
    decoder: Path
    sidecar: Path
    max_abs_diff: dict[str, float]


def _example_inputs(space: LatentSpace, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    lo, hi = space.value_range
    x = lo + (hi - lo) * torch.rand((batch, *space.input_shape), generator=gen)
    z = torch.randn((batch, space.dim), generator=gen)
    return x.to(space.device), z.to(space.device)


def _export_onnx(graph: nn.Module, example: torch.Tensor, path: Path, inp: str, out: str) -> None:
    import warnings

    def _write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow
            torch.onnx.export(
                graph,
                (example,),
                tmp,
                input_names=[inp],
                output_names=[out],
                dynamic_axes={inp: {0: "batch"}, out: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )

    write_atomic(path, _write)


def _export_torchscript(graph: nn.Module, example: torch.Tensor, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, (example,), check_trace=False)
    write_atomic(path, lambda tmp: traced.save(tmp))


def run_onnx(path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """Run a one-input, one-output ONNX graph with onnxruntime on CPU."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: np.asarray(x, np.float32)})[0])


def run_torchscript(path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """Run a TorchScript graph on CPU."""
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(torch.as_tensor(np.asarray(x, np.float32))).numpy()


def _latent_stats(space: LatentSpace) -> dict[str, Any] | None:
    try:
        return space.stats().to_dict()
    except GenerationError:
        return None


def export_model(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    fmt: str = "onnx",
    *,
    device: str = "cpu",
) -> ExportResult:
    """Export `model_dir`'s encoder and decoder to `out_dir` as ONNX or TorchScript, with a sidecar.

    After writing, both graphs are run (onnxruntime / torch.jit) on a random batch and compared
    with PyTorch; the largest absolute differences go into the sidecar.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    space = load_space(model_dir, device=device)
    if fmt == "onnx":
        for part in (space.model, getattr(space.model, "outer", None)):
            obstacle = getattr(part, "onnx_obstacle", None)
            if part is not None and obstacle:
                raise ExportError(
                    f"{model_dir}: no ONNX export of {part.name}: {obstacle}; "
                    "export it with --format torchscript"
                )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    out_name = "magnitude" if space.codec.representation == "stft" else "waveform"
    enc = EncoderGraph(space.model).eval()
    dec = DecoderGraph(space.model, space.latent_shape, space.codec).eval()
    x, z = _example_inputs(space)
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    enc_path, dec_path = out / f"encoder{suffix}", out / f"decoder{suffix}"
    try:
        if fmt == "onnx":
            _export_onnx(enc, x, enc_path, "encoded_input", "latent")
            _export_onnx(dec, z, dec_path, "latent", out_name)
        else:
            _export_torchscript(enc, x, enc_path)
            _export_torchscript(dec, z, dec_path)
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
        raise ExportError(f"{model_dir}: {fmt} export failed: {exc}") from exc
    runner = run_onnx if fmt == "onnx" else run_torchscript
    with torch.no_grad():
        ref_enc = enc(x).cpu().numpy()
        ref_dec = dec(z).cpu().numpy()
    diffs = {
        "encoder": float(np.abs(runner(enc_path, x.cpu().numpy()) - ref_enc).max()),
        "decoder": float(np.abs(runner(dec_path, z.cpu().numpy()) - ref_dec).max()),
    }
    codec = space.codec
    frames_out = list(codec.shape) if codec.representation == "stft" else [codec.num_samples]
    sidecar = {
        "format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "encoder": {
            "file": enc_path.name,
            "input": {
                "name": "encoded_input",
                "shape": ["batch", *space.input_shape],
                "dtype": "float32",
                "meaning": "mu-law STFT magnitude in [0, 1] of a peak-normalised note"
                if codec.representation == "stft"
                else "mu-law waveform in [-1, 1] of a peak-normalised note",
            },
            "output": {
                "name": "latent",
                "shape": ["batch", space.dim],
                "dtype": "float32",
                "meaning": "latent mean (the encoder network's answer; samplegen refines it "
                "with a few optimisation steps when the model's refine_steps is set, which a "
                "graph cannot hold)",
            },
        },
        "decoder": {
            "file": dec_path.name,
            "input": {"name": "latent", "shape": ["batch", space.dim], "dtype": "float32"},
            "output": {
                "name": out_name,
                "shape": ["batch", *frames_out],
                "dtype": "float32",
                "meaning": "linear STFT magnitude (bins x frames, peak about 1, floor "
                "applied); needs phase reconstruction (Griffin-Lim) with the codec's "
                "n_fft, hop, Hann window, centred"
                if codec.representation == "stft"
                else "waveform in [-1, 1] at the codec's sample rate",
            },
        },
        "codec": codec.to_dict(),
        "model": {"path": str(Path(model_dir).resolve()), **space.describe()},
        "latent_stats": _latent_stats(space),
        # A host draws new sounds from it the way `samplegen generate random` does: a component
        # by weight, then means[k] + L_k w with L_k L_k^T = covs[k].
        "code_distribution": None if space.fitted is None else space.fitted.to_dict(),
        "check": {"max_abs_diff_vs_pytorch": diffs, "batch": int(x.shape[0])},
    }
    earlier = _exported_files(out / SIDECAR)
    side = write_json(out / SIDECAR, sidecar)
    # An earlier export here in the other format: its graphs would sit beside a sidecar that no
    # longer describes them.
    for name in earlier - {enc_path.name, dec_path.name}:
        (out / name).unlink(missing_ok=True)
    return ExportResult(out, enc_path, dec_path, side, diffs)


def _exported_files(sidecar: Path) -> set[str]:
    """The graph files an earlier export's sidecar names (none when there is no readable one)."""
    try:
        earlier = json.loads(sidecar.read_text())
        names = {earlier[part]["file"] for part in ("encoder", "decoder")}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    # Only plain names of this folder: a sidecar is no licence to delete anything elsewhere.
    return {n for n in names if isinstance(n, str) and n and Path(n).name == n}
