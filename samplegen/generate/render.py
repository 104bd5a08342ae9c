"""Turn a generation `Plan` into files: a WAV and a spectrogram PNG per sound, and manifest.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.generate.io import write_json
from samplegen.generate.latent import GenerationError, LatentSpace
from samplegen.generate.plots import (
    plot_latent_scatter,
    plot_loss_histogram,
    plot_reconstruction_pair,
    save_spectrogram,
    spectrogram_db,
)
from samplegen.generate.sounds import Plan

MANIFEST = "manifest.json"
# Level for sounds whose original level is unknown (random, sweep): -1 dBFS, under the limiter knee.
DEFAULT_GAIN = float(10 ** (-1 / 20))


@dataclass(frozen=True)
class RenderSettings:
    """How model outputs become audio files."""

    griffin_lim_iters: int = 64
    seed: int = 0
    subtype: str = "PCM_16"
    spectrograms: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Checked here, before any sound is encoded, not when the first one is rendered.
        if self.griffin_lim_iters < 0:
            raise GenerationError(
                f"--griffin-lim-iters: must be >= 0, got {self.griffin_lim_iters}"
            )


def decode_waves(
    space: LatentSpace, z: np.ndarray, settings: RenderSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs `(N, *shape)` and peak-normalised audio `(N, samples)` for latents `(N, D)`."""
    from samplegen.dsp.codec import decode_batch

    encoded = space.decode(z)
    waves = decode_batch(
        encoded,
        space.codec,
        n_iter=settings.griffin_lim_iters,
        seed=settings.seed,
        device=settings.device,
        normalize=True,
    )
    return encoded, np.asarray(waves, dtype=np.float32)


def _write_inputs(
    space: LatentSpace, plan: Plan, out: Path, settings: RenderSettings, encoded: np.ndarray
) -> list[dict[str, Any]]:
    """Copies of the inputs as the model sees them (fitted to the note length, level restored),
    so the page can play originals beside their reconstructions; reconstruct also gets a
    side-by-side spectrogram figure per input."""
    from samplegen.dsp.audio import write_wav
    from samplegen.dsp.codec import decode_batch

    entries: list[dict[str, Any]] = []
    # Reference sets for random/sweep can be large; only the named inputs of the other kinds are copied.
    copy = plan.kind in ("reconstruct", "interpolate", "grid", "perturb")
    for i, inp in enumerate(plan.inputs):
        entry = inp.describe()
        if i < len(plan.input_latents):
            entry["latent"] = np.asarray(plan.input_latents[i]).tolist()
        if copy:
            wave = inp.wave
            if wave is None:  # encoded-only input: its own decode is the closest we have
                wave = decode_batch(
                    inp.encoded[None],
                    space.codec,
                    n_iter=settings.griffin_lim_iters,
                    seed=settings.seed,
                )[0]
            stem = f"input_{i:02d}_{inp.name}"
            gain = DEFAULT_GAIN if inp.peak is None else float(inp.peak)
            write_wav(
                out / f"{stem}.wav",
                np.asarray(wave),
                space.codec.sample_rate,
                settings.subtype,
                gain=gain,
            )
            entry["wav"] = f"{stem}.wav"
            if settings.spectrograms:
                db_in = spectrogram_db(inp.encoded, space.codec, encoded=True)
                save_spectrogram(out / f"{stem}.png", db_in, space.codec, f"input {inp.name}")
                entry["png"] = f"{stem}.png"
                if plan.kind == "reconstruct":
                    k = next(j for j, s in enumerate(plan.sounds) if s.info.get("input_index") == i)
                    db_out = spectrogram_db(encoded[k], space.codec, encoded=True)
                    pair = f"pair_{i:02d}_{inp.name}.png"
                    plot_reconstruction_pair(out / pair, db_in, db_out, space.codec, inp.name)
                    entry["pair_png"] = pair
        entries.append(entry)
    return entries


def write_analysis(
    space: LatentSpace, plan: Plan, out: Path, encoded: np.ndarray
) -> dict[str, Any]:
    """For reconstructions of several inputs: latent scatter per category and a histogram of the
    per-sample losses with the worst samples named. Returns {"latents": file, "losses": file,
    "loss_per_input": {name: loss}}."""
    from samplegen.dsp.metrics import sample_loss

    if plan.kind != "reconstruct" or len(plan.inputs) < 2:
        return {}
    firsts = [
        next(j for j, s in enumerate(plan.sounds) if s.info.get("input_index") == i)
        for i in range(len(plan.inputs))
    ]
    x = np.stack([inp.encoded for inp in plan.inputs]).astype(np.float32)
    losses = np.asarray(sample_loss(encoded[firsts], x), dtype=np.float64)
    names = [inp.name for inp in plan.inputs]
    cats = [inp.category or "unknown" for inp in plan.inputs]
    plot_latent_scatter(
        out / "analysis_latents.png", np.stack(plan.input_latents), cats, title="latent means"
    )
    plot_loss_histogram(out / "analysis_losses.png", losses.tolist(), names)
    return {
        "latents": "analysis_latents.png",
        "losses": "analysis_losses.png",
        "loss_per_input": dict(zip(names, losses.tolist(), strict=True)),
    }


def remove_previous_files(out: Path) -> list[str]:
    """Delete the files an earlier generation listed in `out`'s manifest.json (sounds, inputs,
    figures, the manifest), so a folder used again holds only the new command's files; anything
    else in the folder stays. Returns the names removed."""
    path = out / MANIFEST
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(previous, dict):
        return []
    names: list[str] = []
    for entry in [*(previous.get("sounds") or []), *(previous.get("inputs") or [])]:
        if isinstance(entry, dict):
            names += [entry[k] for k in ("wav", "png", "pair_png") if isinstance(entry.get(k), str)]
    analysis = previous.get("analysis") or {}
    if isinstance(analysis, dict):
        names += [analysis[k] for k in ("latents", "losses") if isinstance(analysis.get(k), str)]
    removed = []
    for name in [*names, MANIFEST]:
        # Only plain names inside the folder: a manifest is not trusted to point elsewhere.
        if Path(name).name != name:
            continue
        target = out / name
        if target.is_file():
            target.unlink()
            removed.append(name)
    return removed


def render_plan(
    space: LatentSpace,
    plan: Plan,
    out_dir: str | os.PathLike[str],
    settings: RenderSettings = RenderSettings(),
    *,
    model_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write every sound of `plan` into `out_dir` and return the manifest's path.

    Files: `<name>.wav` (level restored where the plan knows it, never wrapped around: the writer
    limits), `<name>.png` (spectrogram of the model output), `manifest.json` (inputs and their
    latents, every sound's latent vector and details, model path and configuration, settings, seed).
    """
    from samplegen.dsp.audio import write_wav

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_previous_files(out)
    z = np.stack([s.latent for s in plan.sounds]).astype(np.float32)
    encoded, waves = decode_waves(space, z, settings)
    items: list[dict[str, Any]] = []
    for k, sound in enumerate(plan.sounds):
        wav_name, png_name = f"{sound.name}.wav", f"{sound.name}.png"
        gain = DEFAULT_GAIN if sound.gain is None else float(sound.gain)
        write_wav(out / wav_name, waves[k], space.codec.sample_rate, settings.subtype, gain=gain)
        item: dict[str, Any] = {
            "name": sound.name,
            "wav": wav_name,
            "gain": gain,
            "level_known": sound.gain is not None,
            "info": sound.info,
            "latent": z[k].tolist(),
        }
        if settings.spectrograms:
            db = spectrogram_db(encoded[k], space.codec, encoded=True)
            save_spectrogram(out / png_name, db, space.codec, sound.name)
            item["png"] = png_name
        items.append(item)
    inputs = _write_inputs(space, plan, out, settings, encoded)
    analysis = write_analysis(space, plan, out, encoded) if settings.spectrograms else {}
    manifest = {
        "kind": plan.kind,
        "model": {
            "path": None if model_path is None else str(Path(model_path).resolve()),
            **space.describe(),
            "meta": space.meta,
        },
        "codec": space.codec.to_dict(),
        "settings": {
            **plan.settings,
            "griffin_lim_iters": settings.griffin_lim_iters,
            "decode_seed": settings.seed,
            "subtype": settings.subtype,
        },
        "seed": plan.settings.get("seed", settings.seed),
        "layout": plan.layout,
        "latent_stats": None if plan.stats is None else plan.stats.to_dict(),
        "inputs": inputs,
        "analysis": analysis,
        "sounds": items,
    }
    return write_json(out / MANIFEST, manifest)
