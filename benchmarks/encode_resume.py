"""What a stopped chain encoding keeps: when its blocks come back, and what the rerun does.

Usage: .venv/bin/python benchmarks/encode_resume.py RUN [--stop-after 4] [--block-mib M] [--no-append]

RUN is a `samplegen run` folder (its `models/outer`, `dataset` and `vae_study-encoded`, whose EQ
settings it reads). Each step is a fresh process, as a user's command would be:
1. the whole encoding, timed, with the time each kept block came back;
2. an encoding stopped by SIGINT (Ctrl-C) once `--stop-after` blocks are kept;
3. the same command again, timed: it encodes only what the stopped one had not kept.
The rerun's encodings are compared with the run's own (`vae_study-encoded`) and with step 1's,
value for value. `--block-mib` sets Ray Data's block size instead of the encoder's own (128 is
Ray's default). Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import cpu_name, publish

# One encoding in a process of its own; prints one JSON line per kept block, then one at the end.
_ENCODE = """
import json, sys, time
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
import samplegen.platform.progress_parts as parts
import samplegen.platform.encoded as encoded
from samplegen.platform.encoded import EqAugment, encode_dataset
if sys.argv[5]:
    encoded.BLOCK_BYTES = int(float(sys.argv[5]) * 2**20)
write = parts.write_part
def keep(folder, prefix, table):
    path = write(folder, prefix, table)
    print(json.dumps({"block": table.num_rows, "s": time.perf_counter() - started}), flush=True)
    return path
parts.write_part = keep
started = time.perf_counter()
said = []
encode_dataset(sys.argv[1], sys.argv[2], sys.argv[3], eq=EqAugment(**json.loads(sys.argv[4])),
               echo=said.append)
print(json.dumps({"done": time.perf_counter() - started, "said": said}), flush=True)
"""


def _encode(
    args: list[str], stop_after: int | None = None
) -> tuple[list[dict[str, float]], dict[str, Any] | None]:
    """Run one encoding; SIGINT it once `stop_after` blocks are kept. Its blocks and its end."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ENCODE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    blocks: list[dict[str, float]] = []
    end = None
    for line in proc.stdout:
        record = json.loads(line)
        if "block" in record:
            blocks.append(record)
            if stop_after is not None and len(blocks) == stop_after:
                proc.send_signal(signal.SIGINT)
        else:
            end = record
    proc.wait()
    return blocks, end


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a `samplegen run` folder")
    p.add_argument("--stop-after", type=int, default=4, help="blocks kept before the stop")
    p.add_argument("--block-mib", type=float, default=None, help="Ray Data's block size, MiB")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    if args.stop_after < 1:
        p.error(f"--stop-after: must be >= 1, got {args.stop_after}")
    run = Path(args.run)
    theirs = run / "vae_study-encoded"
    if not (theirs / "encoded.json").is_file():
        p.error(f"{run}: no vae_study-encoded/encoded.json (not a finished `samplegen run`?)")

    import numpy as np

    from samplegen.platform.encoded import load_encoded

    eq = json.loads((theirs / "encoded.json").read_text()).get("eq") or {}
    with tempfile.TemporaryDirectory() as tmp:
        common = [str(run / "models" / "outer"), str(run / "dataset")]
        block = "" if args.block_mib is None else str(args.block_mib)
        t0 = time.perf_counter()
        whole_blocks, whole_end = _encode([*common, f"{tmp}/whole", json.dumps(eq), block])
        whole_wall = time.perf_counter() - t0
        stopped_blocks, stopped_end = _encode(
            [*common, f"{tmp}/stopped", json.dumps(eq), block], args.stop_after
        )
        if stopped_end is not None:
            raise SystemExit("the encoding finished before the stop reached it: lower --stop-after")
        t0 = time.perf_counter()
        _, rerun_end = _encode([*common, f"{tmp}/stopped", json.dumps(eq), block])
        rerun_wall = time.perf_counter() - t0
        assert whole_end is not None and rerun_end is not None
        rerun, own = load_encoded(f"{tmp}/stopped"), load_encoded(theirs)
        whole = load_encoded(f"{tmp}/whole")
        equal = all(
            np.array_equal(rerun.splits[s].z, other.splits[s].z)
            and rerun.splits[s].meta == other.splits[s].meta
            for other in (own, whole)
            for s in rerun.splits
        )
        leftover = list(Path(tmp).glob(".*.progress"))

    def when(blocks: list[dict[str, float]]) -> str:
        return ", ".join(f"{b['s']:.1f}" for b in blocks[:6]) + (" ..." if len(blocks) > 6 else "")

    resumed = next((m for m in rerun_end["said"] if m.startswith("encoding ")), "(said nothing)")
    text = "\n".join(
        [
            f"## A stopped chain encoding goes on where it stopped (benchmarks/encode_resume.py), "
            f"{dt.date.today()}",
            "",
            f"- Command: `.venv/bin/python benchmarks/encode_resume.py {args.run} "
            f"--stop-after {args.stop_after}"
            + ("" if args.block_mib is None else f" --block-mib {args.block_mib:g}")
            + "`",
            f"- Machine: {platform.machine()}, {cpu_name()}, no GPU; each "
            "encoding in a process of its own that starts its own local Ray (2 CPUs); EQ copies "
            f"{eq or 'none'}",
            "",
            "| step | wall s | encoding s | blocks kept | blocks came back at (s into the encoding) |",
            "|---|---:|---:|---:|---|",
            f"| the whole encoding | {whole_wall:.1f} | {whole_end['done']:.1f} | "
            f"{len(whole_blocks)} | {when(whole_blocks)} |",
            f"| stopped by SIGINT after {args.stop_after} blocks | - | - | {len(stopped_blocks)} | "
            f"{when(stopped_blocks)} |",
            f"| the same command again | {rerun_wall:.1f} | {rerun_end['done']:.1f} | - | - |",
            "",
            f"The rerun said: `{resumed}`. Its encodings are "
            f"{'equal, value for value,' if equal else '**not** equal'} to the run's own and to "
            f"the whole encoding's; {'no' if not leftover else len(leftover)} progress folder "
            "was left behind.",
            "",
        ]
    )
    publish(text, append=not args.no_append)
    return 0 if equal and not leftover else 1


if __name__ == "__main__":
    sys.exit(main())
