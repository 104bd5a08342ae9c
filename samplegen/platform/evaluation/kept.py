"""An evaluation's model outputs, kept a batch at a time, so that a stopped evaluation goes on.

Most of a combined model's evaluation is refining each note's code (100 steps through both
decoders, about a quarter of a second a note on two CPU cores), and most notes are the training
split's, which the overfit ratio and the PCA reference need. Each batch's outputs are written
atomically, as safetensors, into a hidden folder beside the evaluation's output folder
(progress_parts.progress_folder) as soon as the batch is done. Each part records the evaluation's
inputs (model weights, dataset, settings); a part of other inputs, or one that cannot be read, is
ignored and its batch run again. A finished evaluation removes the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.atomic import write_atomic
from samplegen.platform.evaluation.inference import SplitOutputs

_INPUTS = "samplegen.evaluation"
_ROWS = "rows"


def inputs_key(inputs: dict[str, Any]) -> str:
    """A short digest of an evaluation's inputs (evaluation_inputs), which every part carries."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class KeptBatches:
    """The kept outputs of one evaluation (`key`) in `folder`, a part per split and first row."""

    folder: Path
    key: str

    def _part(self, split: str, start: int) -> Path:
        return self.folder / f"{split}-{start:07d}.safetensors"

    def get(self, split: str, start: int, rows: int) -> SplitOutputs | None:
        """The kept outputs of `split`'s rows start..start+rows, or None when there are none."""
        from safetensors import SafetensorError, safe_open

        path = self._part(split, start)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as part:
                meta = part.metadata() or {}
                if meta.get(_INPUTS) != self.key or meta.get(_ROWS) != str(rows):
                    return None
                # safe_open's handle is not iterable: its names come from keys().
                arrays = {name: part.get_tensor(name) for name in part.keys()}  # noqa: SIM118
        except (OSError, SafetensorError, ValueError):
            return None  # a damaged part: its batch is simply run again
        if "losses" not in arrays or "latent" not in arrays:
            return None
        if any(a.shape[0] != rows for a in arrays.values()):
            return None
        return SplitOutputs(
            losses=arrays["losses"],
            recon=arrays.get("recon"),
            latent=arrays["latent"],
            outer_latent=arrays.get("outer_latent"),
            inner_losses=arrays.get("inner_losses"),
            outer_losses=arrays.get("outer_losses"),
        )

    def keep(self, split: str, start: int, outputs: SplitOutputs) -> None:
        """Keep the outputs of `split`'s rows from `start` (written atomically)."""
        from safetensors.numpy import save_file

        arrays = {
            f.name: np.ascontiguousarray(value)
            for f in fields(SplitOutputs)
            if (value := getattr(outputs, f.name)) is not None
        }
        meta = {_INPUTS: self.key, _ROWS: str(int(outputs.losses.shape[0]))}
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._part(split, start)
        write_atomic(path, lambda tmp: save_file(arrays, str(tmp), metadata=meta))

    def unwritable(self) -> str | None:
        """Why parts cannot be kept in the folder, or None when they can (it is made here)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return exc.strerror or str(exc)
        return None if os.access(self.folder, os.W_OK) else "not writable"

    def count(self) -> int:
        """How many parts of this evaluation's inputs the folder holds."""
        from safetensors import SafetensorError, safe_open

        found = 0
        for path in sorted(self.folder.glob("*.safetensors")) if self.folder.is_dir() else []:
            try:
                with safe_open(str(path), framework="numpy") as part:
                    found += (part.metadata() or {}).get(_INPUTS) == self.key
            except (OSError, SafetensorError, ValueError):
                continue
        return found

    def remove(self) -> None:
        """Drop the kept outputs: the evaluation they belonged to is written."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def remove_if_empty(self) -> None:
        """Drop the folder if it keeps nothing (an evaluation that failed or stopped before its
        first batch leaves no empty hidden folder behind)."""
        with contextlib.suppress(OSError):
            self.folder.rmdir()
