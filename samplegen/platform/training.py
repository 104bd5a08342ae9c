"""The epoch loop: Adam over numpy split arrays, evaluation, and checkpoints as safetensors + JSON.

No Ray here: the Tune trainable and `samplegen train` both drive a `Trainer`.

Training hyper-parameters share the trial config with the model's (see `split_config`):
`batch_exp` (batch = 2^b, as the original) or `batch_size`; `lr_exp` (lr = 10^lr_exp x batch, the
original's scaling, so a larger batch takes larger steps) or `lr` (used as given); `weight_decay`
(Adam's L2 term, default 0 as the original); `lr_schedule` (`constant`, the original's, or `cosine`:
the rate falls from lr to 0 over the run's epochs along half a cosine, which settles the noisy last
epochs a constant rate leaves; measured in benchmarks/RESULTS.md, sound quality); `mixup` (alpha of
mixup, Zhang et al. 2018: each training batch becomes convex mixes of pairs of its own rows with
weights drawn from Beta(alpha, alpha); 0, the default, is off. For the VAE over outer encodings
it helped at a learning rate of 1e-3 and not at the quick study's best rate: benchmarks/RESULTS.md,
GPU sweep of the inner VAE).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samplegen.atomic import write_atomic, write_json_atomic
from samplegen.errors import SamplegenError
from samplegen.models.base import InnerModel, SampleModel
from samplegen.models.combined import TrainsOnEncodings
from samplegen.platform.checkpoint_folders import STATE_JSON

TRAINING_KEYS: frozenset[str] = frozenset(
    {"batch_exp", "batch_size", "lr_exp", "lr", "weight_decay", "lr_schedule", "mixup"}
)
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
STATE_TENSORS = "state.safetensors"
BEST_TENSORS = "best.safetensors"


class NonFiniteLoss(SamplegenError):
    """Training produced a NaN or infinite loss; the message says where."""


@dataclass(frozen=True)
class OptimHparams:
    """Batch size, learning rate, weight decay and schedule for Adam, and batch mixup."""

    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    mixup: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SamplegenError(f"batch size: must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SamplegenError(f"learning rate: must be positive and finite, got {self.lr}")
        if self.weight_decay < 0:
            raise SamplegenError(f"weight_decay: must be >= 0, got {self.weight_decay}")
        if not (self.mixup >= 0 and math.isfinite(self.mixup)):
            raise SamplegenError(f"mixup: must be >= 0 (0 is off), got {self.mixup}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise SamplegenError(
                f"lr_schedule: {self.lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}"
            )

    def lr_at(self, epoch: int, total_epochs: int | None) -> float:
        """The learning rate for `epoch` (1-based) of a run of `total_epochs`."""
        if self.lr_schedule == "constant" or not total_epochs:
            return self.lr
        progress = min(max(epoch - 1, 0), total_epochs) / total_epochs
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def split_config(config: Mapping[str, Any]) -> tuple[OptimHparams, dict[str, Any]]:
    """Split a flat trial config into Adam settings and the model's hyper-parameters."""
    if "batch_exp" in config and "batch_size" in config:
        raise SamplegenError("config: give batch_exp or batch_size, not both")
    if "lr_exp" in config and "lr" in config:
        raise SamplegenError("config: give lr_exp or lr, not both")
    if "batch_exp" in config:
        batch = 2 ** int(round(float(config["batch_exp"])))
    else:
        batch = int(config.get("batch_size", 16))
    if "lr_exp" in config:
        lr = 10.0 ** float(config["lr_exp"]) * batch
    else:
        lr = float(config.get("lr", 1e-3))
    optim = OptimHparams(
        batch_size=batch,
        lr=lr,
        weight_decay=float(config.get("weight_decay", 0.0)),
        lr_schedule=str(config.get("lr_schedule", "constant")),
        mixup=float(config.get("mixup", 0.0)),
    )
    model_hp = {k: v for k, v in config.items() if k not in TRAINING_KEYS}
    return optim, model_hp


def make_adam(params: Any, optim: OptimHparams, device: str) -> torch.optim.Adam:
    """Adam, fused where this torch supports it for the device (about 5x faster per CPU step)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)


def mix_batch(
    x: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Mixup: row i becomes lam_i x_i + (1 - lam_i) x_perm(i), lam_i ~ Beta(alpha, alpha).

    Returns the mixed batch with the weights and partners drawn (from `rng`, so a resumed run
    draws the same mixes).
    """
    n = x.shape[0]
    lam = rng.beta(alpha, alpha, size=n).astype(np.float32)
    perm = rng.permutation(n)
    w = torch.as_tensor(lam, device=x.device).reshape(n, *([1] * (x.dim() - 1)))
    partner = x[torch.as_tensor(perm, device=x.device)]
    return w * x + (1.0 - w) * partner, lam, perm


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Flush subnormal floats to zero inside the block only.

    Subnormals in Adam's state more than double CPU step time, and flushing them changes no
    measurable loss (stack notes). The setting is processor state of the calling thread, so it is
    switched back off afterwards (torch has no getter; off is the IEEE default): left on, it broke
    unrelated code in the same process (hypothesis refuses to draw floats without subnormals).
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@dataclass
class EpochResult:
    """One epoch's numbers.

    `val_loss` weighs the loss's terms as this epoch's training did, so it is the figure to set
    against `train_loss`. `val_settled` weighs them as they are weighed once the model's schedules
    are over (a VAE's KL at its full weight), so it is comparable from epoch to epoch: within a KL
    warm-up, `val_loss` is lower than the model is worth. They differ only for a model whose loss
    depends on the epoch.
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_recon: float
    val_settled: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Trains one model on in-memory float32 arrays (N, *input_shape), one epoch at a time.

    Shuffling and the model's own randomness are seeded per epoch from `seed`, and the learning
    rate is a function of the epoch and `total_epochs` (the run's epoch limit), so a run resumed
    from a checkpoint draws the same batches and steps as one that never stopped.
    """

    def __init__(
        self,
        model: SampleModel | TrainsOnEncodings,
        optim: OptimHparams,
        train_x: np.ndarray,
        val_x: np.ndarray,
        *,
        device: str = "cpu",
        seed: int = 0,
        amp: bool = False,
        eval_batch_size: int = 64,
        total_epochs: int | None = None,
    ) -> None:
        if len(train_x) == 0 or len(val_x) == 0:
            raise SamplegenError("training needs non-empty train and validation splits")
        self.model = model
        self.optim = optim
        self.device = str(device)
        self.seed = int(seed)
        self.amp = bool(amp) and self.device.startswith("cuda")
        self.eval_batch_size = int(eval_batch_size)
        self.total_epochs = total_epochs
        self.batch_size = min(optim.batch_size, len(train_x))
        # On a GPU the whole split lives on the device; on CPU batches are gathered from numpy.
        if self.device.startswith("cuda"):
            self.train_x: Any = torch.as_tensor(np.asarray(train_x), device=self.device)
            self.val_x: Any = torch.as_tensor(np.asarray(val_x), device=self.device)
        else:
            self.train_x, self.val_x = train_x, val_x
        self.optimizer = make_adam(model.parameters(), optim, self.device)

    def _batch(self, x: Any, idx: np.ndarray) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x[torch.as_tensor(idx, device=x.device)]
        return torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)).to(self.device)

    def _autocast(self) -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    def train_epoch(self, epoch: int) -> tuple[float, dict[str, float]]:
        """One pass over the training split; the mean per-sample loss and mean metrics."""
        with flushed_denormals():
            return self._train_epoch(epoch)

    def _train_epoch(self, epoch: int) -> tuple[float, dict[str, float]]:
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.optim.lr_at(epoch, self.total_epochs)
        torch.manual_seed(self.seed * 1_000_003 + epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_x))
        mixes = np.random.default_rng([self.seed, epoch, 1])
        total, count = 0.0, 0
        sums: dict[str, float] = {}
        for b, idx in enumerate(self._batches(order)):
            x = self._batch(self.train_x, idx)
            if self.optim.mixup:
                x = mix_batch(x, self.optim.mixup, mixes)[0]
            with self._autocast():
                out = self.model(x)
                loss = self.model.loss(x, out, epoch=epoch)
            value = self._step(self.optimizer, loss.total, f"at epoch {epoch}, batch {b}")
            n = len(idx)
            total += value * n
            count += n
            for k, v in loss.metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
        return total / count, {k: v / count for k, v in sums.items()}

    def _batches(self, order: np.ndarray) -> Iterator[np.ndarray]:
        """The training rows of each batch of an epoch in `order`, sorted (faster to gather)."""
        for start in range(0, len(order), self.batch_size):
            yield np.sort(order[start : start + self.batch_size])

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, where: str) -> float:
        """One optimiser step on `loss`; its value, or NonFiniteLoss naming `where`."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLoss(f"non-finite training loss ({value}) {where}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return value

    @torch.no_grad()
    def evaluate(self, x: Any, epoch: int | None = None) -> tuple[float, float]:
        """Mean per-sample (total, reconstruction) loss over `x`, in eval mode, weighed as at
        `epoch` (None: as once the model's schedules are over)."""
        with flushed_denormals():
            total, recon, _ = self._evaluate(x, epoch)
            return total, recon

    def _evaluate(self, x: Any, epoch: int | None) -> tuple[float, float, float]:
        """Mean per-sample total at `epoch`, reconstruction, and total with the schedules over."""
        self.model.eval()
        total, recon, settled, count = 0.0, 0.0, 0.0, 0
        for start in range(0, len(x), self.eval_batch_size):
            idx = np.arange(start, min(start + self.eval_batch_size, len(x)))
            xb = self._batch(x, idx)
            with self._autocast():
                out = self.model(xb)
                loss = self.model.loss(xb, out, epoch=epoch)
                # A second loss on the same forward pass: cheap, and only a model with a
                # schedule gives another figure.
                over = loss if epoch is None else self.model.loss(xb, out, epoch=None)
            n = len(idx)
            total += float(loss.total) * n
            recon += float(loss.recon) * n
            settled += float(over.total) * n
            count += n
        return total / count, recon / count, settled / count

    def anchor(self) -> int:
        """The model's deliberate start, for a run's first epoch only (a resumed run restores its
        weights instead): `model.anchor_epochs()` passes over the training split that teach the
        model its `anchor_targets` by `anchor_loss`, with an Adam of their own at the base learning
        rate. Seeded like the epochs, so a run that restarts from nothing starts the same way.
        Returns the epochs run (0 for a model that asks for none)."""
        model = self.model
        if not isinstance(model, InnerModel) or not (epochs := model.anchor_epochs()):
            return 0
        with flushed_denormals():
            model.train()
            n = len(self.train_x)
            with torch.no_grad():
                targets = model.anchor_targets(self._batch(self.train_x, np.arange(n)))
            adam = make_adam(model.parameters(), self.optim, self.device)
            for e in range(epochs):
                rng = np.random.default_rng([self.seed, 0, 2, e])
                order = rng.permutation(n)
                torch.manual_seed(int(rng.integers(2**62)))
                for b, idx in enumerate(self._batches(order)):
                    with self._autocast():
                        loss = model.anchor_loss(
                            self._batch(self.train_x, idx),
                            targets[torch.as_tensor(idx, device=targets.device)],
                        )
                    self._step(adam, loss, f"in pass {e + 1} of the start, batch {b}")
        return epochs

    def run_epoch(self, epoch: int) -> EpochResult:
        """Train one epoch, then evaluate on the validation split; raises NonFiniteLoss."""
        t0 = time.perf_counter()
        train_loss, metrics = self.train_epoch(epoch)
        with torch.no_grad(), flushed_denormals():
            val_loss, val_recon, val_settled = self._evaluate(self.val_x, epoch)
        for value in (val_loss, val_recon, val_settled):
            if not math.isfinite(value):
                raise NonFiniteLoss(f"non-finite validation loss ({value}) at epoch {epoch}")
        return EpochResult(
            epoch,
            train_loss,
            val_loss,
            val_recon,
            val_settled,
            time.perf_counter() - t0,
            metrics,
        )

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Model and optimiser state as flat tensors, plus the optimiser's non-tensor settings."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt = self.optimizer.state_dict()
        scalars: dict[str, Any] = {}
        for idx, state in opt["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{idx}.{key}"] = value
                else:
                    scalars[f"{idx}.{key}"] = value
        return tensors, {"param_groups": opt["param_groups"], "scalars": scalars}

    def load_state_tensors(
        self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
    ) -> None:
        """Restore what `state_tensors` returned."""
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state)
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                idx, key = k[6:].split(".", 1)
                state.setdefault(int(idx), {})[key] = v
        for k, v in meta.get("scalars", {}).items():
            idx, key = k.split(".", 1)
            state.setdefault(int(idx), {})[key] = v
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights (for keeping the best epoch's weights)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    # clone + contiguous: safetensors refuses shared or strided storage.
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    write_atomic(path, lambda tmp: save_file(data, tmp))


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    write_json_atomic(path, data, indent=1, sort_keys=True)


def save_checkpoint(
    directory: str | Path,
    trainer: Trainer,
    meta: Mapping[str, Any],
    best_weights: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write state.safetensors (+ best.safetensors) and state.json (meta + optimiser settings).

    The folder is replaced whole (built beside it, then renamed): a process killed while saving
    leaves the previous checkpoint, never new weights beside old metadata."""
    import shutil

    from samplegen.atomic import new_build_folder, replace_folder

    directory = Path(directory)
    build = new_build_folder(directory)
    try:
        tensors, optim_meta = trainer.state_tensors()
        _save_tensors(build / STATE_TENSORS, tensors)
        if best_weights is not None:
            _save_tensors(build / BEST_TENSORS, best_weights)
        write_json(build / STATE_JSON, {**meta, "optimizer": optim_meta})
        replace_folder(build, directory)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return directory


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state tensors, meta) from a checkpoint folder; raises SamplegenError if unreadable."""
    from safetensors.torch import load_file

    from samplegen.atomic import recover_folder

    directory = Path(directory)
    recover_folder(directory, STATE_JSON)  # a save killed between its two renames
    try:
        meta = json.loads((directory / STATE_JSON).read_text())
        tensors = load_file(str(directory / STATE_TENSORS))
    except (OSError, json.JSONDecodeError) as exc:
        raise SamplegenError(f"{directory}: not a readable training checkpoint ({exc})") from None
    return tensors, meta


def load_best_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The best epoch's model weights from a checkpoint (the latest weights if none were kept)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if (directory / BEST_TENSORS).exists():
        return load_file(str(directory / BEST_TENSORS))
    tensors, _ = load_checkpoint(directory)
    return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
