"""summary.md: the readable side of metrics.json."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}%"


def _stats_row(label: str, stats: dict[str, Any] | None) -> str:
    if not stats:
        return f"| {label} | n/a | n/a | n/a | n/a |"
    return (
        f"| {label} | {_f(stats.get('mean'))} | {_f(stats.get('median'))} | "
        f"{_f(stats.get('min'))} | {_f(stats.get('max'))} |"
    )


def _loss_lines(m: dict[str, Any]) -> list[str]:
    loss = m["loss"]
    return [
        "## Loss (the original's units)",
        "",
        f"Per-sample sum of squared errors over {loss['values_per_sample']} encoded values; "
        "RMS% = 100 sqrt(mean loss / values per sample).",
        "",
        "| samples | mean | median | min | max | RMS% |",
        "|---|---|---|---|---|---|",
        f"| {loss['count']} | {_f(loss.get('mean'))} | {_f(loss.get('median'))} | "
        f"{_f(loss.get('min'))} | {_f(loss.get('max'))} | {_pct(loss.get('rms_percent'))} |",
        "",
        *_interval_lines(loss.get("rms_percent_interval")),
    ]


def interval_text(interval: dict[str, Any] | None) -> str | None:
    """'1.41-1.83% (95%, 11 instruments)', or None when the split has no interval."""
    if not interval:
        return None
    return (
        f"{interval['low']:.3f}-{interval['high']:.3f}% "
        f"({100 * interval['level']:.0f}%, {interval['groups']} instruments)"
    )


def _interval_lines(interval: dict[str, Any] | None) -> list[str]:
    text = interval_text(interval)
    if text is None or interval is None:
        return []
    return [
        f"RMS% interval over the split's instruments: {text}. It is a bootstrap over whole "
        f"groups ({interval['resamples']} draws of the split's instruments with replacement): "
        "how far the figure could move with another draw of instruments like these.",
        "",
    ]


def _spectral_lines(m: dict[str, Any]) -> list[str]:
    mag, audio = m["spectral"]["magnitude"], m["spectral"]["audio"]
    lines = [
        "## Spectral figures (per sample, dB: lower is better)",
        "",
        f"Magnitudes: {mag['compares']}.",
        "",
        "| figure | mean | median | min | max |",
        "|---|---|---|---|---|",
        _stats_row("spectral convergence (dB)", mag.get("spectral_convergence_db")),
        _stats_row("log-spectral distance (dB)", mag.get("log_spectral_distance_db")),
        "",
        f"Audio: {audio['compares']}.",
        "",
        "| figure | mean | median | min | max |",
        "|---|---|---|---|---|",
    ]
    if audio.get("griffin_lim"):
        base = audio.get("phase_recovery_only") or {}
        lines += [
            _stats_row("spectral convergence after Griffin-Lim (dB)", audio.get("spectral_convergence_db")),
            _stats_row("log-spectral distance after Griffin-Lim (dB)", audio.get("log_spectral_distance_db")),
            _stats_row("  phase recovery alone: spectral convergence", base.get("spectral_convergence_db")),
            _stats_row("  phase recovery alone: log-spectral distance", base.get("log_spectral_distance_db")),
        ]  # fmt: skip
    lines += [
        _stats_row("multi-resolution STFT distance", audio.get("multi_resolution_stft_distance")),
        "",
    ]
    return lines


def _category_lines(m: dict[str, Any]) -> list[str]:
    lines = [
        "## Per category",
        "",
        "| category | samples | mean loss | RMS% |",
        "|---|---|---|---|",
    ]
    for cat, row in m["per_category"].items():
        lines.append(
            f"| {cat} | {row['count']} | {_f(row['mean_loss'])} | {_pct(row['rms_percent'])} |"
        )
    lines += ["", f"## The {len(m['worst'])} worst samples", ""]
    lines += ["| # | name | category | loss | RMS% |", "|---|---|---|---|---|"]
    for i, row in enumerate(m["worst"], 1):
        lines.append(
            f"| {i} | {row['name']} | {row['category']} | {_f(row['loss'])} | "
            f"{_pct(row['rms_percent'])} |"
        )
    return lines + [""]


def _latent_lines(m: dict[str, Any]) -> list[str]:
    lat = m["latent"]
    lines = [
        "## Latent space",
        "",
        f"Shape {lat['shape']} ({lat['dims']} values); active units (variance across samples of "
        f"the encoder's code, a VAE's posterior mean, > {lat['active_unit_threshold']}): {_f(lat.get('active_units'))} of {lat['dims']}.",
    ]
    if lat.get("kl_total") is not None:
        lines.append(f"KL to the prior, summed over dimensions: {_f(lat['kl_total'])}.")
    per_dim = [lat.get(k) for k in ("mean", "std", "kl_per_dim")]
    if per_dim[0] is not None and per_dim[1] is not None:
        lines += ["", "| dim | mean | std | KL |", "|---|---|---|---|"]
        kl = per_dim[2] or [None] * len(per_dim[0])
        for d, (mu, sd, k) in enumerate(zip(per_dim[0], per_dim[1], kl, strict=False)):
            lines.append(f"| {d} | {_f(mu)} | {_f(sd)} | {_f(k)} |")
    elif lat.get("summary"):
        s = lat["summary"]
        lines.append(
            f"Per-dimension mean ranges {_f(s['mean']['min'])} .. {_f(s['mean']['max'])}, "
            f"std {_f(s['std']['min'])} .. {_f(s['std']['max'])} (median {_f(s['std']['median'])})."
        )
    return lines + [""]


def _overfit_lines(m: dict[str, Any]) -> list[str]:
    o = m["overfit"]
    return [
        "## Overfit",
        "",
        f"Mean loss on {o['split']}: {_f(o.get('split_mean_loss'))}; on train: "
        f"{_f(o.get('train_mean_loss'))}; ratio: {_f(o.get('ratio'))}.",
        "",
    ]


def _reference_lines(m: dict[str, Any]) -> list[str]:
    ref = m.get("pca_reference")
    if not ref:
        return []
    pca, model, outer = ref["pca"], ref["model"], ref["outer_only"]
    k = pca["n_components"]

    def row(label: str, pair: dict[str, Any]) -> str:
        return (
            f"| {label} | {_f(pair['train']['mean_loss'])} | {_pct(pair['train']['rms_percent'])} | "
            f"{_f(pair['eval']['mean_loss'])} | {_pct(pair['eval']['rms_percent'])} |"
        )

    split = m["dataset"]["split"]
    fit = "+".join(ref.get("fitted_on", ["train"]))
    return [
        f"## Beside a linear fit: PCA with {k} components (the inner latent size)",
        "",
        f"{ref['compares']}.",
        "",
        f"| end to end (outer units) | {fit} loss | {fit} RMS% | {split} loss | {split} RMS% |",
        "|---|---|---|---|---|",
        row("this model", model["end_to_end"]),
        row(f"PCA, {pca['n_components_used']} components", pca["end_to_end"]),
        row("outer model alone (floor)", outer),
        "",
        f"| encoded domain | {fit} loss | {fit} RMS% | {split} loss | {split} RMS% |",
        "|---|---|---|---|---|",
        row("this model's inner model", model["encoded"]),
        row(f"PCA, {pca['n_components_used']} components", pca["encoded"]),
        "",
    ]


def other_dataset_warning(metrics: dict[str, Any]) -> str | None:
    """What a reader must know when the model was trained on another dataset than the one
    evaluated (None when it was trained on this one, or does not say)."""
    model, data = metrics["model"], metrics["dataset"]
    if model.get("trained_on_this_dataset") is not False:
        return None
    return (
        f"the model was trained on another dataset (fingerprint {model.get('dataset_fingerprint')}"
        f", this one {data.get('fingerprint')}): its {data['split']} split may hold notes the "
        "model trained on, and the overfit ratio and the PCA reference use this dataset's train "
        "split, not the notes the model trained on"
    )


def render_summary(metrics: dict[str, Any]) -> str:
    """Markdown summary of a metrics.json dict (as written, nulls included)."""
    model, data, settings = metrics["model"], metrics["dataset"], metrics["settings"]
    lines = [
        f"# Evaluation of {model['name']} ({model['kind']}) on the {data['split']} split",
        "",
        f"- model: `{model['dir']}` ({_f(model.get('num_params'))} parameters, latent "
        f"{model['latent_shape']}, compression {_f(model.get('compression'))})",
        f"- dataset: `{data['dir']}` (fingerprint {data.get('fingerprint')}), "
        f"{data['count']} samples",
        f"- Griffin-Lim iterations {settings['griffin_lim_iters']}, seed {settings['seed']}, "
        f"device {settings['device']}",
        "",
    ]
    warning = other_dataset_warning(metrics)
    if warning:
        lines += [f"**Note:** {warning}", ""]
    for part in (_loss_lines, _spectral_lines, _category_lines, _latent_lines, _overfit_lines):
        lines += part(metrics)
    lines += _reference_lines(metrics)
    nulls = metrics.get("null_reasons") or {}
    if nulls:
        lines += ["## Values not available", ""]
        lines += [f"- `{path}`: {reason}" for path, reason in nulls.items()]
        lines.append("")
    return "\n".join(lines)
