"""The Tune function trainable: one trial = one model trained epoch by epoch on object-store splits.

Every epoch it reports train_loss, val_loss (the objective; the original optimised the train loss,
a bug; weighed as once the model's schedules are over, so a VAE's KL counts at its full weight even
within its warm-up; a chained study's objective is instead the end-to-end reconstruction, no KL), overfit (val / train, each weighed as this epoch's training), rate (relative change of the validation loss's moving average over
the stall window, or of the last epoch before that), params, compression, epoch_seconds, and a
status. Checkpoints are safetensors + JSON; when Ray restarts a trial it continues at the epoch
after its last checkpoint. A NaN/infinite loss or a rejected configuration ends only that trial:
it reports a last result with `status` (`nan`, `rejected`) and `reason`, and returns.

Fault injection (reliability tests): `fail_at_epoch` or `fail_probability` (seeded per trial and
epoch) makes a trial raise `InjectedFault` once, after checkpointing that epoch with a marker, so
the restarted trial resumes after it and does not fail again.
"""

from __future__ import annotations

import math
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.errors import SamplegenError
from samplegen.platform.checkpoint_folders import checkpoint_index, newer_than
from samplegen.platform.stopping import StallRule, overfit_ratio, relative_change

OBJECTIVE = "val_loss"
# What the searchers learn from and the study ranks by: a trial's best epoch, not its last (a
# trial stopped for overfitting or a stall ends worse than its best, which is what is kept).
SEARCH_OBJECTIVE = "best_val_loss"
MODE = "min"
EXAMPLE_PNG = "example.png"
EXAMPLE_WAV = "example.wav"


class InjectedFault(RuntimeError):
    """The failure a fault-injection setting asked for (not a bug)."""


@dataclass(frozen=True)
class TrialSettings:
    """Everything a trial needs besides its searched config (the same for every trial of a study)."""

    model: str
    input_shape: tuple[int, ...]
    epochs: int
    max_params: int | None = None
    stall: StallRule = field(default_factory=StallRule)
    seed: int = 0
    device: str = "auto"
    cpus: float = 1.0
    gpus: float = 0.0
    amp: bool = False
    eval_batch_size: int = 64
    checkpoint_every: int = 1
    keep_best_weights: bool = True
    fail_at_epoch: int | None = None
    fail_probability: float = 0.0
    fail_seed: int = 0
    codec: dict[str, Any] | None = None  # for the end-of-trial example (spectrogram + audio)
    # Chained (inner) studies: the frozen outer model's directory. The objective is then the
    # end-to-end validation loss through its decoder, in the outer representation's units, while
    # the stall and overfit rules keep comparing train and validation losses in encoded units.
    end_to_end: str | None = None
    write_example: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SamplegenError(f"--epochs: must be >= 1, got {self.epochs}")
        if self.checkpoint_every < 1:
            raise SamplegenError(f"checkpoint_every: must be >= 1, got {self.checkpoint_every}")
        if not 0 <= self.fail_probability <= 1:
            raise SamplegenError(
                f"fail_probability: must be in [0, 1], got {self.fail_probability}"
            )


def trial_seed(base: int, config: dict[str, Any]) -> int:
    """A seed that differs per configuration and is stable across restarts."""
    blob = repr(sorted((str(k), repr(v)) for k, v in config.items())).encode()
    return (int(base) * 1_000_003 + zlib.crc32(blob)) % (2**31)


def should_inject(settings: TrialSettings, config: dict[str, Any], epoch: int) -> bool:
    """Whether fault injection fires at `epoch` for this trial (before the once-only marker).

    Drawn from the trial's configuration, not its id: Tune's trial ids are random, so a study of
    fixed configurations would crash a different number of trials on every run."""
    if settings.fail_at_epoch is not None and epoch == settings.fail_at_epoch:
        return True
    if settings.fail_probability > 0:
        rng = np.random.default_rng([trial_seed(settings.fail_seed, config), epoch])
        return bool(rng.random() < settings.fail_probability)
    return False


def _failure(status: str, reason: str, epoch: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        **extra,
        "epoch": epoch,
        "train_loss": math.inf,
        OBJECTIVE: math.inf,
        "status": status,
        "reason": reason,
    }


def train_trial(config: dict[str, Any], *, data: dict[str, Any], settings: TrialSettings) -> None:
    """Tune function trainable; `data` maps split names to ObjectRefs of float32 arrays."""
    import ray
    import torch
    from ray import tune

    from samplegen.models.registry import build_model
    from samplegen.platform.resources import trial_device
    from samplegen.platform.training import (
        NonFiniteLoss,
        Trainer,
        load_best_weights,
        load_checkpoint,
        model_tensors,
        save_checkpoint,
        split_config,
    )

    trial_id = tune.get_context().get_trial_id() or "local"
    torch.set_num_threads(max(1, int(settings.cpus)))
    device = trial_device(settings.gpus, settings.device)
    seed = trial_seed(settings.seed, config)

    checkpoint = tune.get_checkpoint()
    start_epoch = 1
    try:
        optim, model_hp = split_config(config)
        torch.manual_seed(seed)
        model = build_model(
            settings.model,
            model_hp,
            settings.input_shape,
            max_params=settings.max_params,
            device=device,
        )
    except SamplegenError as exc:  # ModelRejected, HParamError, bad training settings
        tune.report(_failure("rejected", str(exc), 0, {"params": 0, "compression": 0.0}))
        return

    static = {
        "params": int(model.num_params()),
        "compression": float(model.compression),
        "batch_size": int(optim.batch_size),
        "lr": float(optim.lr),
        "device": device,
    }
    # object_store_splits puts SplitData objects; plain arrays work too.
    train_x = _array(ray.get(data["train"]))
    val_x = _array(ray.get(data["validation"]))
    end_to_end = None
    if settings.end_to_end:
        # The outer model comes by value: on a cluster, the folder the driver named may not exist
        # on the node that runs this trial.
        end_to_end = EndToEnd(
            ray.get(data["outer_model"]), _array(ray.get(data["validation_target"])), device
        )
    trainer = Trainer(
        model,
        optim,
        train_x,
        val_x,
        device=device,
        seed=seed,
        amp=settings.amp,
        eval_batch_size=settings.eval_batch_size,
        total_epochs=settings.epochs,
    )

    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    best_val, best_epoch = math.inf, 0
    best_weights = None
    fault_injected = False
    restored_from = 0
    for candidate in restore_candidates(checkpoint):
        try:
            with candidate.as_directory() as ckdir:
                tensors, meta = load_checkpoint(ckdir)
                trainer.load_state_tensors(tensors, meta["optimizer"])
                if settings.keep_best_weights:
                    best_weights = load_best_weights(ckdir)
        except Exception:
            if candidate is checkpoint:
                raise
            best_weights = None
            continue  # a newer checkpoint cut short by the crash: fall back to an older one
        if meta.get("final_metrics"):
            # The trial had finished, but the driver died (or the trial crashed) before Tune
            # recorded that: never train it further. Tune has the final result when it restores
            # from this very checkpoint, which it registered with that result; a newer one, Tune
            # never saw, is reported again.
            if candidate is checkpoint:
                return
            with tempfile.TemporaryDirectory(prefix="sg-ckpt-") as tmp:
                candidate.to_directory(tmp)
                report = {**meta["final_metrics"], "restored_from": int(meta["epoch"])}
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
            return
        checkpoint = candidate
        break
    if checkpoint is not None:
        history = {k: list(v) for k, v in meta["history"].items()}
        best_val, best_epoch = float(meta["best_val_loss"]), int(meta["best_epoch"])
        fault_injected = bool(meta.get("fault_injected", False))
        restored_from = int(meta["epoch"])
        start_epoch = restored_from + 1

    if start_epoch == 1:
        try:
            trainer.anchor()
        except NonFiniteLoss as exc:
            tune.report(_failure("nan", str(exc), 0, {**static, "best_val_loss": best_val}))
            return
    window = settings.stall.window or 1
    for epoch in range(start_epoch, settings.epochs + 1):
        try:
            result = trainer.run_epoch(epoch)
        except NonFiniteLoss as exc:
            tune.report(_failure("nan", str(exc), epoch, {**static, "best_val_loss": best_val}))
            return
        history["train_loss"].append(result.train_loss)
        history["val_loss"].append(result.val_loss)
        # Weighed as after the model's schedules: a KL warm-up's epochs look better than the
        # model they leave, and would otherwise win the best epoch and the trial's rank.
        objective = result.val_settled
        if end_to_end is not None:
            # A chained study ranks by the end-to-end reconstruction alone, with no KL term: an
            # epoch inside a KL warm-up is not held back here, and could win its trial's best
            # epoch. Left so because adding the KL would re-rank every chained study's trials.
            objective = end_to_end.loss(model, val_x, settings.eval_batch_size)
            history.setdefault("e2e_val_loss", []).append(objective)
            if not math.isfinite(objective):
                reason = f"non-finite end-to-end validation loss ({objective}) at epoch {epoch}"
                tune.report(_failure("nan", reason, epoch, {**static, "best_val_loss": best_val}))
                return
        if objective < best_val:
            best_val, best_epoch = objective, epoch
            if settings.keep_best_weights:
                best_weights = model_tensors(model)

        rate = relative_change(history["val_loss"], window)
        if rate is None:
            prev = history["val_loss"][-2] if len(history["val_loss"]) > 1 else result.val_loss
            rate = result.val_loss / prev - 1.0 if prev else 0.0
        status, reason = "running", ""
        stop = settings.stall.check(history["train_loss"], history["val_loss"])
        if stop is not None:
            status, reason = stop
        elif epoch == settings.epochs:
            status, reason = "completed", f"reached the epoch limit ({settings.epochs})"
        inject = not fault_injected and should_inject(settings, config, epoch)
        metrics = {
            **static,
            **{f"train_{k}": v for k, v in result.metrics.items()},
            "epoch": epoch,
            "train_loss": result.train_loss,
            OBJECTIVE: objective,
            "latent_val_loss": result.val_settled,
            "val_recon": result.val_recon,
            "overfit": overfit_ratio(result.train_loss, result.val_loss),
            "rate": rate,
            "epoch_seconds": result.seconds,
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "restored_from": restored_from,
            "status": status,
            "reason": reason,
        }
        final = status != "running"
        # A new best is saved whatever --checkpoint-every says: a scheduler may stop the trial
        # before its next checkpoint, and the study exports the best weights under this epoch's
        # loss.
        improved = best_epoch == epoch and settings.keep_best_weights
        if final or inject or improved or epoch % settings.checkpoint_every == 0:
            meta = {
                "epoch": epoch,
                "history": history,
                "best_val_loss": best_val,
                "best_epoch": best_epoch,
                "seed": seed,
                "fault_injected": fault_injected or inject,
                "model": settings.model,
                "config": config,
                "input_shape": list(settings.input_shape),
                "final_metrics": metrics if final else None,
            }
            with tempfile.TemporaryDirectory(prefix="sg-ckpt-") as tmp:
                save_checkpoint(tmp, trainer, meta, best_weights)
                if final and settings.write_example and settings.codec:
                    _write_example(Path(tmp), model, val_x, settings, best_weights)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        else:
            tune.report(metrics)
        if inject:
            raise InjectedFault(f"injected fault at epoch {epoch} (trial {trial_id})")
        if final:
            return


def restore_candidates(given: Any) -> list[Any]:
    """Checkpoints to restore a trial from, newest first, ending with Tune's own (`given`).

    After the driver is killed, Tune's experiment snapshot (written every ~10 s) may be older than
    the trial's last checkpoint in storage; restoring from the snapshot's would train again epochs
    that were already done, or a trial that had already finished. So every `checkpoint_NNNNNN`
    folder of the trial that holds a later epoch than Tune's comes first, the latest epoch first
    (`training.checkpoints_newest_first`); the caller falls back to older ones if one cannot be
    read.
    """
    from ray import tune

    try:
        storage = tune.get_context().get_storage()
        fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
        import pyarrow.fs as pafs

        infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    except Exception:  # no Tune session storage (or unreadable): keep Tune's choice
        return [given] if given is not None else []
    folders = [
        i.path for i in infos if i.type == pafs.FileType.Directory and checkpoint_index(i.path) >= 0
    ]
    newer = newer_than(fs, folders, given.path if given is not None else None)
    return [tune.Checkpoint(path, filesystem=fs) for path in newer] + (
        [given] if given is not None else []
    )


class EndToEnd:
    """The end-to-end validation loss of an inner model through a frozen outer decoder."""

    def __init__(self, outer: str | dict[str, bytes], target: np.ndarray, device: str) -> None:
        """`outer`: the outer model's folder, or its files (`model_files`) as a trial gets them."""
        from samplegen.models.artifact import load_model, load_model_files

        loaded = (
            load_model_files(outer, device)
            if isinstance(outer, dict)
            else load_model(outer, device)
        )
        self.outer = loaded.model.eval()
        for p in self.outer.parameters():
            p.requires_grad_(False)
        self.target = target
        self.device = device

    def loss(self, inner: Any, val_z: np.ndarray, batch_size: int) -> float:
        """The outer model's own loss (per sample, averaged) of outer.decode(inner.reconstruct(z))
        against x: the per-sample sum of squared errors for the models trained on it, and what a
        model trained on another objective was trained on (harmonic_ae: its spectral distance,
        since its waveform error measures only phase)."""
        import torch

        from samplegen.models.base import ModelOutput

        inner.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(val_z), batch_size):
                z = torch.as_tensor(
                    np.asarray(val_z[start : start + batch_size]), device=self.device
                )
                h = inner.reconstruct(z).float().view(-1, *self.outer.latent_shape)
                x_hat = self.outer.decode(h)
                x = torch.as_tensor(
                    np.asarray(self.target[start : start + batch_size]), device=self.device
                )
                out = ModelOutput(recon=x_hat, latent=h)
                total += float(self.outer.loss(x, out).total) * len(x)
        return total / len(val_z)


def _array(obj: Any) -> np.ndarray:
    return np.asarray(getattr(obj, "x", obj))


def _write_example(
    directory: Path, model: Any, val_x: np.ndarray, settings: TrialSettings, best: Any
) -> None:
    """A spectrogram PNG (input vs reconstruction) and the reconstruction as WAV; best effort."""
    import torch

    from samplegen.dsp.audio import write_wav
    from samplegen.dsp.codec import decode
    from samplegen.dsp.config import CodecConfig

    codec = CodecConfig.from_dict(settings.codec or {})
    if tuple(codec.shape) != tuple(settings.input_shape):
        return  # inner models see encodings, not codec samples: nothing audible to write
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        x = torch.from_numpy(np.array(val_x[:1], dtype=np.float32)).to(device)
        recon = model.reconstruct(x).float().cpu().numpy()[0]
    wave = decode(recon, codec, n_iter=32, seed=0)
    write_wav(directory / EXAMPLE_WAV, np.asarray(wave), codec.sample_rate)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, img, title in zip(
        axes, (np.asarray(val_x[0]), recon), ("input", "reconstruction"), strict=True
    ):
        if img.ndim == 2:
            ax.imshow(img, origin="lower", aspect="auto", vmin=0, vmax=1)
        else:
            ax.plot(img, linewidth=0.3)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(directory / EXAMPLE_PNG, dpi=80)
    plt.close(fig)
