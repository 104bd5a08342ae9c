"""Trained models on disk: a directory with config.json and weights.safetensors (never pickle).

config.json holds the format version, model name, hyper-parameters, input shape, codec settings
(CodecConfig.to_dict()), dataset fingerprint, metrics and free-form extras. A combined model keeps
both parts' weights in the one file under the prefixes `outer.` and `inner.`, and both parts'
configurations in its hyper-parameters.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from samplegen.atomic import file_in_the_way, new_build_folder, recover_folder, replace_folder
from samplegen.dsp.config import CodecConfig, ConfigError
from samplegen.errors import SamplegenError
from samplegen.models.base import SampleModel
from samplegen.models.registry import ModelRejected, build_model, hparams_dict

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"


class ArtifactError(SamplegenError):
    """A model directory is missing, incomplete, corrupted or inconsistent."""


class CodecMismatch(SamplegenError):
    """A model is asked to work on data encoded with different codec settings."""


@dataclass(frozen=True)
class ModelMeta:
    """Everything in config.json besides the weights."""

    directory: Path
    name: str
    hparams: dict[str, Any]
    input_shape: tuple[int, ...]
    dataset_fingerprint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded in eval mode, the codec it was trained with, and its metadata."""

    model: SampleModel
    codec: CodecConfig
    meta: ModelMeta


def _json_default(value: Any) -> Any:
    # Metrics often arrive as numpy or torch scalars.
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def save_model(
    directory: str | os.PathLike[str],
    model: SampleModel,
    *,
    codec: CodecConfig,
    dataset_fingerprint: str | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` to `directory` atomically (built in a temporary sibling, then renamed).

    An existing model directory is replaced; anything else there (a file, a folder of other
    things) is refused with ArtifactError, never replaced. Returns the directory's path.
    """
    target = Path(directory)
    check_model_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "hparams": hparams_dict(model.hparams),
        "input_shape": list(model.input_shape),
        "codec": codec.to_dict(),
        "dataset_fingerprint": dataset_fingerprint,
        "metrics": metrics or {},
        "extra": extra or {},
        "num_params": model.num_params(),
        "latent_shape": list(model.latent_shape),
        "compression": model.compression,
    }
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = new_build_folder(target)
    try:
        save_file(
            tensors, str(tmp / WEIGHTS_NAME), metadata={"format_version": str(FORMAT_VERSION)}
        )
        text = json.dumps(config, indent=2, sort_keys=True, default=_json_default)
        (tmp / CONFIG_NAME).write_text(text + "\n")
        # A crash inside leaves the old model in a sibling; every load and save recovers it.
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def check_model_target(target: Path) -> None:
    """Refuse a target that is not a model directory, an empty folder or absent: a mistyped --out
    must not delete a user's files. (Called before training too, so the mistake costs no run.)"""
    recover_folder(target, CONFIG_NAME)
    blocked = file_in_the_way(target.parent)
    if blocked is not None:
        raise ArtifactError(f"{blocked}: is a file, so {target} cannot be a model folder")
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir() and ((target / CONFIG_NAME).is_file() or not any(target.iterdir())):
        return
    raise ArtifactError(
        f"{target}: exists and is not a samplegen model directory (no {CONFIG_NAME}); refusing "
        "to replace it: choose another --out, or remove it first"
    )


def read_meta(directory: str | os.PathLike[str]) -> tuple[ModelMeta, CodecConfig]:
    """Read and validate config.json of a model directory (weights untouched)."""
    path = Path(directory)
    recover_folder(path, CONFIG_NAME)
    if not path.is_dir():
        raise ArtifactError(f"{path}: model directory does not exist")
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise ArtifactError(f"{cfg_path}: missing; not a samplegen model directory")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{cfg_path}: unreadable JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{cfg_path}: expected a JSON object")
    version = cfg.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{cfg_path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
        )
    missing = [k for k in ("model", "hparams", "input_shape", "codec") if k not in cfg]
    if missing:
        raise ArtifactError(f"{cfg_path}: missing key(s) {', '.join(missing)}")
    try:
        codec = CodecConfig.from_dict(cfg["codec"])
    except (ConfigError, TypeError) as exc:
        raise ArtifactError(f"{cfg_path}: codec: {exc}") from exc
    meta = ModelMeta(
        directory=path,
        name=str(cfg["model"]),
        hparams=dict(cfg["hparams"]),
        input_shape=tuple(int(d) for d in cfg["input_shape"]),
        dataset_fingerprint=cfg.get("dataset_fingerprint"),
        metrics=dict(cfg.get("metrics") or {}),
        extra=dict(cfg.get("extra") or {}),
        format_version=int(version),
    )
    return meta, codec


def load_model(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a model directory onto `device`, in eval mode; ArtifactError if anything is off
    (DeviceError for a device this machine lacks)."""
    from samplegen.models.device import torch_device

    torch_device(device)
    meta, codec = read_meta(directory)
    cfg_path = meta.directory / CONFIG_NAME
    weights_path = meta.directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise ArtifactError(f"{weights_path}: missing weights file")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{weights_path}: corrupted or unreadable weights: {exc}") from exc
    try:
        model = build_model(meta.name, meta.hparams, meta.input_shape, device=device)
    except ModelRejected as exc:
        raise ArtifactError(f"{cfg_path}: the configuration cannot be built: {exc}") from exc
    except SamplegenError as exc:
        raise ArtifactError(f"{cfg_path}: {exc}") from exc
    expected = model.state_dict()
    problems: list[str] = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_short(unexpected)}")
    for key in sorted(set(expected) & set(tensors)):
        if tuple(expected[key].shape) != tuple(tensors[key].shape):
            problems.append(
                f"{key}: shape {tuple(tensors[key].shape)} in the weights, "
                f"{tuple(expected[key].shape)} from config.json"
            )
    if problems:
        raise ArtifactError(
            f"{meta.directory}: config.json does not match {WEIGHTS_NAME} "
            f"(was it edited?): {'; '.join(problems[:5])}"
        )
    model.load_state_dict(tensors)
    model.eval()
    return LoadedModel(model=model, codec=codec, meta=meta)


def model_files(directory: str | os.PathLike[str]) -> dict[str, bytes]:
    """A model directory's two files as bytes, to send by value to a process on another machine
    (a Ray worker), where the folder's path may not exist; `load_model_files` loads them there."""
    meta, _ = read_meta(directory)
    files = {}
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        path = meta.directory / name
        try:
            files[name] = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{path}: unreadable: {exc}") from exc
    return files


def load_model_files(files: dict[str, bytes], device: str | torch.device = "cpu") -> LoadedModel:
    """`load_model` of the files `model_files` read, through a temporary folder."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sg-model-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return load_model(tmp, device=device)


def _short(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def check_codec(
    loaded: LoadedModel | CodecConfig, codec: CodecConfig, what: str = "dataset"
) -> None:
    """Raise CodecMismatch if `codec` (a dataset's) differs from the model's codec settings."""
    mine = loaded.codec if isinstance(loaded, LoadedModel) else loaded
    try:
        mine.check_compatible(codec, what=what)
    except ConfigError as exc:
        where = f"model {loaded.meta.directory}" if isinstance(loaded, LoadedModel) else "model"
        raise CodecMismatch(f"{where} cannot be used with this {what}: {exc}") from exc


def check_dataset(loaded: LoadedModel | CodecConfig, dataset: Any) -> None:
    """Refuse a dataset (anything with a `.codec` CodecConfig) made with other codec settings,
    or whose per-sample shape differs from the model's input."""
    check_codec(loaded, dataset.codec, what="dataset")
    if isinstance(loaded, LoadedModel):
        shape = tuple(dataset.codec.shape)
        # Inner models take encodings, not codec-shaped samples: only outer shapes must match.
        if loaded.model.kind != "inner" and shape != tuple(loaded.meta.input_shape):
            raise CodecMismatch(
                f"model {loaded.meta.directory}: input shape {loaded.meta.input_shape} "
                f"!= dataset sample shape {shape}"
            )
