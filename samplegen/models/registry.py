"""Build models by name from plain hyper-parameter dicts, with a parameter cap checked up front."""

from __future__ import annotations

import dataclasses
import importlib
import numbers
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch

from samplegen.errors import SamplegenError
from samplegen.models.base import SampleModel

KINDS: tuple[str, ...] = ("outer_stft", "outer_wave", "inner", "combined")

# Modules whose classes register themselves; imported on first use, never at package import.
_BUILTIN_MODULES: tuple[str, ...] = (
    "samplegen.models.conv2d_ae",
    "samplegen.models.frame_ae",
    "samplegen.models.mlp_ae",
    "samplegen.models.rnn_ae",
    "samplegen.models.audio_conv_ae",
    "samplegen.models.harmonic_ae",
    "samplegen.models.vae",
    "samplegen.models.bounded_ae",
    "samplegen.models.vq_vae",
    "samplegen.models.combined",
)

_MODELS: dict[str, type[SampleModel]] = {}
_HPARAMS: dict[str, type] = {}

M = TypeVar("M", bound=type[SampleModel])


class HParamError(SamplegenError, ValueError):
    """A hyper-parameter dict has an unknown key or a value of the wrong type or range."""


class ModelRejected(SamplegenError):
    """The requested model cannot be built: too many parameters or an impossible layer shape.

    A search reports it as a rejected trial rather than a failure.
    """


def register(hparams_cls: type) -> Callable[[M], M]:
    """Class decorator: make a SampleModel subclass buildable by its `name` with `hparams_cls`."""

    def wrap(cls: M) -> M:
        if not cls.name or cls.kind not in KINDS:
            raise TypeError(f"{cls.__name__}: set `name` and a `kind` in {KINDS}")
        _MODELS[cls.name] = cls
        _HPARAMS[cls.name] = hparams_cls
        return cls

    return wrap


def _load_builtin() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def model_names(kind: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of `kind` if given."""
    _load_builtin()
    if kind is not None and kind not in KINDS:
        raise HParamError(f"model kind {kind!r} is not one of {', '.join(KINDS)}")
    return sorted(n for n, c in _MODELS.items() if kind is None or c.kind == kind)


def model_class(name: str) -> type[SampleModel]:
    """The class registered under `name`."""
    _load_builtin()
    if name not in _MODELS:
        raise SamplegenError(
            f"model {name!r} is unknown; known models: {', '.join(sorted(_MODELS))}"
        )
    return _MODELS[name]


def takes_representation(name: str) -> str | None:
    """The sample representation (`stft` or `wave`) outer model `name` takes; None for the
    others, which take what the model before them gives."""
    return {"outer_stft": "stft", "outer_wave": "wave"}.get(model_class(name).kind)


def hparams_class(name: str) -> type:
    """The frozen hyper-parameter dataclass of model `name`."""
    model_class(name)
    return _HPARAMS[name]


def _coerce(name: str, key: str, value: Any, kind: Any) -> Any:
    """Convert one value (search libraries hand out numpy scalars) to the field's type."""
    where = f"model {name}: hyper-parameter {key}"
    if kind is bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        if isinstance(value, numbers.Integral) and int(value) in (0, 1):
            return bool(value)
        raise HParamError(f"{where}: expected true/false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise HParamError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, numbers.Integral):
            return int(value)
        if not float(value).is_integer():
            raise HParamError(f"{where}: expected an integer, got {value!r}")
        return int(float(value))
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise HParamError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise HParamError(f"{where}: expected a string, got {value!r}")
        return str(value)
    origin = typing.get_origin(kind) or kind
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise HParamError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def make_hparams(name: str, hparams: Mapping[str, Any] | Any) -> Any:
    """Build model `name`'s hyper-parameter dataclass from a plain dict (or pass one through).

    Unknown keys raise HParamError naming them; missing keys take the defaults; numbers are
    coerced to the declared int/float types.
    """
    cls = hparams_class(name)
    if isinstance(hparams, cls):
        return hparams
    if not isinstance(hparams, Mapping):
        raise HParamError(f"model {name}: hyper-parameters must be a mapping, got {hparams!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(hparams) - set(fields))
    if unknown:
        raise HParamError(
            f"model {name}: unknown hyper-parameter(s) {', '.join(map(str, unknown))}; "
            f"known: {', '.join(fields)}"
        )
    types = typing.get_type_hints(cls)
    values = {k: _coerce(name, k, v, types[k]) for k, v in hparams.items()}
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, SamplegenError):
            raise
        raise HParamError(f"model {name}: {exc}") from exc


def count_params(name: str, hparams: Mapping[str, Any] | Any, input_shape: Sequence[int]) -> int:
    """Parameters model `name` would have, counted on the meta device (allocates nothing)."""
    cls = model_class(name)
    hp = make_hparams(name, hparams)
    with torch.device("meta"):
        return cls(hp, tuple(int(d) for d in input_shape)).num_params()


def latent_shape_of(
    name: str, hparams: Mapping[str, Any] | Any, input_shape: Sequence[int]
) -> tuple[int, ...]:
    """The code shape model `name` would make, found on the meta device (allocates nothing)."""
    cls = model_class(name)
    hp = make_hparams(name, hparams)
    with torch.device("meta"):
        return tuple(cls(hp, tuple(int(d) for d in input_shape)).latent_shape)


def build_model(
    name: str,
    hparams: Mapping[str, Any] | Any,
    input_shape: Sequence[int],
    *,
    max_params: int | None = None,
    device: str | torch.device = "cpu",
) -> SampleModel:
    """Build model `name` for inputs of `input_shape` (no batch axis) on `device`.

    The model is first built on the meta device (no memory) to check shapes and count parameters;
    more than `max_params` raises ModelRejected naming the limit before any weights exist.
    """
    cls = model_class(name)
    hp = make_hparams(name, hparams)
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ModelRejected(f"model {name}: input shape {shape} is not a valid shape")
    with torch.device("meta"):
        probe = cls(hp, shape)
    n = probe.num_params()
    if max_params is not None and n > max_params:
        raise ModelRejected(
            f"model {name}: {n:,} parameters exceed the limit max_params={max_params:,}"
        )
    del probe
    with torch.device(device):
        model = cls(hp, shape)
    return model.to(device)


def hparams_dict(hparams: Any) -> dict[str, Any]:
    """A hyper-parameter dataclass as a plain JSON-able dict."""
    return dataclasses.asdict(hparams)
