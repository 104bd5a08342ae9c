"""Shared pieces of the study tests: a tiny search space, tiny in-memory data, a tiny dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from samplegen.dsp.config import CodecConfig
from samplegen.platform.study import StudyConfig, StudyData

SHAPE = (32, 16)

TINY_SPACE: dict[str, Any] = {
    "model": "conv2d_ae",
    "params": {
        "layers": {"type": "int", "low": 1, "high": 2, "grid": [1, 2]},
        "kernels": {"type": "int", "low": 2, "high": 6, "grid": [2, 4]},
        "kernel_size": {"type": "const", "value": 3},
        "batch_exp": {"type": "int", "low": 2, "high": 4, "grid": [3]},
        "lr_exp": {"type": "float", "low": -5.0, "high": -3.0, "grid": [-4.0]},
    },
}


def write_space(path: Path, space: dict[str, Any] | None = None, **params: Any) -> Path:
    """Write TINY_SPACE (with `params` replacing entries) as YAML; returns the path."""
    entries: dict[str, Any] = {**(space or TINY_SPACE)["params"], **params}
    data = {"model": "conv2d_ae", "params": entries}
    path.write_text(yaml.safe_dump(data))
    return path


def one_trial_config(tmp_path: Path, name: str, **kw: Any) -> StudyConfig:
    """A grid study of one configuration (the smallest model of TINY_SPACE) under
    tmp_path/studies, for tests of what happens to one trial (faults, retries, restores)."""
    space = write_space(
        tmp_path / "space.yaml",
        layers={"type": "const", "value": 1},
        kernels={"type": "const", "value": 2},
    )
    return tiny_config(tmp_path / "studies", space, name, search="grid", **kw)


def tiny_data(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> StudyData:
    """Random [0, 1] samples with some structure (a smooth ramp), 48 train / 16 validation."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, shape[0], dtype=np.float32)[:, None] * np.ones(shape, np.float32)
    train = (0.5 * ramp + 0.5 * rng.random((48, *shape), dtype=np.float32)).astype(np.float32)
    val = (0.5 * ramp + 0.5 * rng.random((16, *shape), dtype=np.float32)).astype(np.float32)
    return StudyData(train, val, CodecConfig(), "tiny-fingerprint", "random")


def tiny_config(storage: Path, space: Path, name: str, **kw: Any) -> StudyConfig:
    """A StudyConfig for seconds-long studies on tiny_data."""
    base: dict[str, Any] = dict(
        name=name,
        model="conv2d_ae",
        trials=4,
        epochs=3,
        storage=str(storage),
        space=str(space),
        cutoff_grace=2,
        stall_window=None,
        overfit_limit=None,
        progress=False,
        max_params=None,
    )
    base.update(kw)
    return StudyConfig(**base)


# Tiny search spaces for the chain and the main job on the small test codec.
TINY_OUTER_SPACE = """model: frame_ae
params:
  frame_latent: {type: const, value: 6}
  hidden: {type: const, value: 16}
  depth: {type: const, value: 2}
  context: {type: const, value: 1}
  batch_exp: {type: const, value: 3}
  lr_exp: {type: float, low: -4, high: -3.5}
"""
TINY_VAE_SPACE = """model: vae
params:
  latent: {type: const, value: 3}
  depth: {type: const, value: 2}
  ratio: {type: float, low: 0.3, high: 0.6}
  batch_exp: {type: const, value: 3}
  lr_exp: {type: const, value: -4}
"""
