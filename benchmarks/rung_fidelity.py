"""How well a study's early epochs rank its trials: what an ASHA rung at each epoch would decide.

Usage:
  .venv/bin/python benchmarks/rung_fidelity.py --study DIR [--rungs 1,2,4,8,16] [--no-append]

DIR is a finished study whose trials all ran to their end (`--scheduler fifo`), e.g. the full
preset's outer space on the quick run's dataset:
  .venv/bin/samplegen tune outer --data runs/quick/dataset --space full_frame_ae --search random \\
      --trials 6 --epochs 30 --scheduler fifo --cpus-per-trial 1 --stall-window 0 \\
      --overfit-limit 0 --name probe --storage studies

For each rung epoch: the Spearman rank correlation of the trials' validation loss there with the
best each reaches over its whole run, and the trials a halving rung there (ASHA with reduction 2:
only the better half of the trials at the rung go on) would stop, the one that ends best among
them or not. This is the synchronous form of the rule, all trials judged together; real ASHA
judges each trial against those that reached the rung before it. Reads the study's own epoch log
(`epochs/`). Appends a dated section to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import publish  # noqa: E402

from samplegen.errors import SamplegenError  # noqa: E402


def rung_table(
    logs: dict[str, list[dict[str, Any]]], rungs: Sequence[int]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Each trial's best validation loss, and for each rung its correlation and decisions."""
    from scipy.stats import spearmanr

    best = {
        t: min(float(r["val_loss"]) for r in rows if r.get("val_loss") is not None)
        for t, rows in logs.items()
    }
    winner = min(best, key=lambda t: best[t])
    table = []
    for rung in rungs:
        at = {
            t: float(r["val_loss"])
            for t, rows in logs.items()
            for r in rows
            if r["epoch"] == rung and r.get("val_loss") is not None
        }
        if len(at) < len(logs):
            raise SamplegenError(f"epoch {rung}: only {len(at)} of {len(logs)} trials reached it")
        ids = sorted(at)
        rho = float(spearmanr([at[t] for t in ids], [best[t] for t in ids]).statistic)
        order = sorted(ids, key=lambda t: at[t])
        stopped = order[(len(order) + 1) // 2 :]
        table.append(
            {"rung": rung, "rho": rho, "stopped": stopped, "winner_stopped": winner in stopped}
        )
    return best, table


def section(
    study: str,
    best: dict[str, float],
    table: list[dict[str, Any]],
    configs: dict[str, str],
    argv: str,
) -> str:
    """The markdown section for RESULTS.md."""
    ranked = sorted(best, key=lambda t: best[t])
    lines = [
        f"## What an ASHA rung at each epoch would decide (benchmarks/rung_fidelity.py), "
        f"{dt.date.today()}",
        "",
        f"- Command: `.venv/bin/python benchmarks/rung_fidelity.py {argv}`",
        f"- Machine: {platform.machine()} 2-core CPU, no GPU",
        f"- Study: `{study}` ({len(best)} trials, every one run to its end). Trials by the best "
        "validation loss each reached:",
        "",
        "| trial | best val_loss | configuration |",
        "|---|---:|---|",
    ]
    lines += [f"| {t} | {best[t]:.3f} | {configs.get(t, '')} |" for t in ranked]
    lines += [
        "",
        "| rung epoch | Spearman with the best | a halving rung stops | stops the trial that ends best |",
        "|---:|---:|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row['rung']} | {row['rho']:.2f} | {', '.join(row['stopped'])} | "
            f"{'yes' if row['winner_stopped'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _configs(study: Path) -> dict[str, str]:
    from samplegen.platform.study import read_results, trial_params

    out = {}
    for row in read_results(study):
        params = trial_params(row)
        out[str(row["trial_id"])] = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in sorted(params.items())
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True, help="a finished study folder (fifo)")
    p.add_argument("--rungs", default="1,2,4,8,16", help="comma-separated rung epochs")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args(argv)
    import pyarrow.fs as pafs

    from samplegen.platform.epoch_log import read_epoch_logs

    study = Path(a.study).resolve()
    logs = read_epoch_logs(pafs.LocalFileSystem(), str(study))
    if len(logs) < 3:
        raise SystemExit(f"{study}: {len(logs)} trial logs in epochs/; a ranking needs 3 or more")
    rungs = [int(x) for x in a.rungs.split(",") if x.strip()]
    best, table = rung_table(logs, rungs)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    publish(section(str(study), best, table, _configs(study), argv_text), append=not a.no_append)


if __name__ == "__main__":
    main()
