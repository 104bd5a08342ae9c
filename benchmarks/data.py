"""Dataset preparation speed and memory: the built-in library to STFT and wave datasets on 2 cores.

Usage: .venv/bin/python benchmarks/data.py [--source builtin] [--repr stft,wave] [--num-cpus 2]
       [--batch-size 16] [--no-append]

Starts a local Ray (num_cpus, no dashboard), prepares each representation from scratch (--force)
into a temporary folder, and samples every 0.25 s the proportional set size (PSS, so shared pages
such as Ray's object store are counted once) of the driver and every process it started (GCS,
raylet, Ray workers). Reports wall time, files per second, the scan/encode split, peak total PSS,
peak driver PSS and the dataset size on disk. Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from results_file import publish


def _children(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Peak PSS of this process and of its whole process tree, sampled in a thread."""

    def __init__(self, period: float = 0.25) -> None:
        self.period = period
        self.peak_total = 0
        self.peak_driver = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            total = sum(_pss_kib(p) for p in _children(me))
            self.peak_total = max(self.peak_total, total)
            self.peak_driver = max(self.peak_driver, _pss_kib(me))
            self._stop.wait(self.period)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="builtin")
    parser.add_argument("--repr", default="stft,wave")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import logging

    import ray

    from samplegen.dsp.config import CodecConfig
    from samplegen.platform.datasets import load_dataset, prepare_dataset
    from samplegen.platform.sources import resolve_source

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    resolve_source(args.source)  # renders the library once, outside the timed runs
    print(f"source ready in {time.perf_counter() - t0:.1f} s")
    temp_ray = tempfile.mkdtemp(prefix="sgbench-", dir="/tmp")
    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        _temp_dir=temp_ray,
    )
    rows = []
    work = Path(tempfile.mkdtemp(prefix="sgbench-data-"))
    try:
        # One throw-away run so worker start-up (and torch import) is not charged to the first repr.
        warm = CodecConfig(duration=0.1, sample_rate=8000, n_fft=256, hop=128, fade_s=0.0)
        prepare_dataset(args.source, work / "warm", warm, notes="all", echo=None)
        for rep in args.repr.split(","):
            config = CodecConfig(representation=rep)
            marks: list[tuple[float, str]] = []

            def echo(msg: str, marks: list[tuple[float, str]] = marks) -> None:
                marks.append((time.perf_counter(), msg))
                print(f"  {msg}")

            start = time.perf_counter()
            with MemorySampler() as mem:
                out = prepare_dataset(
                    args.source,
                    work / rep,
                    config,
                    force=True,
                    batch_size=args.batch_size,
                    echo=echo,
                )
            wall = time.perf_counter() - start
            scan_start = next(t for t, m in marks if m.startswith("scanning"))
            encode_start = next(t for t, m in marks if m.startswith("encoding"))
            t_load = time.perf_counter()
            data = load_dataset(out)
            load_s = time.perf_counter() - t_load
            n_rows = sum(len(s) for s in data.splits.values())
            seen = data.info["counts"]["seen"]
            rows.append(
                {
                    "repr": rep,
                    "shape": "x".join(map(str, config.shape)),
                    "files": seen,
                    "rows": n_rows,
                    "wall": wall,
                    "scan": encode_start - scan_start,
                    "encode": start + wall - encode_start,
                    "rate": seen / wall,
                    "peak_total": mem.peak_total / 1024,
                    "peak_driver": mem.peak_driver / 1024,
                    "disk": _dir_mib(out),
                    "load": load_s,
                    "x_mib": sum(s.x.nbytes for s in data.splits.values()) / 2**20,
                }
            )
            del data
            print(rows[-1])
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(temp_ray, ignore_errors=True)

    lines = [
        "",
        f"## Dataset preparation (benchmarks/data.py), {dt.date.today().isoformat()}",
        "",
        "- Command: `" + " ".join([".venv/bin/python benchmarks/data.py", *sys.argv[1:]]) + "`",
        f"- Machine: 2-core CPU, no GPU ({platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}, ray {ray.__version__}); local Ray with num_cpus={args.num_cpus}, "
        f"batch size {args.batch_size}",
        f"- Source: {args.source}; every run rebuilds (force) after one warm-up run; times include "
        "listing, the scan stage (read, sha256, decode, checks) and the encode stage (decode again, "
        "encode, Parquet writes).",
        "- Peak memory: PSS of the driver + every process it started (GCS, raylet, workers; shared "
        "pages such as the object store counted once), sampled every 0.25 s.",
        "",
        "| repr | shape | files | rows | wall s | scan s | encode s | files/s | peak total PSS MiB | "
        "peak driver PSS MiB | on disk MiB | load s | loaded x MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['repr']} | {r['shape']} | {r['files']} | {r['rows']} | {r['wall']:.1f} | {r['scan']:.1f} | "
            f"{r['encode']:.1f} | {r['rate']:.1f} | {r['peak_total']:.0f} | {r['peak_driver']:.0f} | "
            f"{r['disk']:.0f} | {r['load']:.1f} | {r['x_mib']:.0f} |"
        )
    publish("\n".join(lines) + "\n", append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
