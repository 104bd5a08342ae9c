"""Benchmark every model at realistic shapes: parameters, training and decoding speed.

Usage: .venv/bin/python benchmarks/models.py [--seconds 4] [--batch 32] [--device cpu|cuda]
       [--amp] [--no-write]

Training throughput: samples/s of forward + loss + backward + Adam step (torch threads = 2,
denormals flushed). Decode speed: times real time = batch * 2 s of audio / seconds to decode a
batch of latents (eval mode, no grad). Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from samplegen.models.registry import build_model

STFT = (1025, 87)
WAVE = (88_200,)
SECONDS_PER_SAMPLE = 2.0


def cases() -> list[tuple[str, str, dict[str, Any], tuple[int, ...]]]:
    """(label, model, hparams, input shape): the original's best configurations where known."""
    conv_best = {"layers": 5, "kernels": 20, "kernel_size": 4}
    conv_latent = 20 * 64 * 6  # conv2d_ae best on 1025 x 87
    audio_latent = 37 * 61
    vae_best = {"latent": 7, "depth": 4, "ratio": 0.25}
    return [
        ("conv2d_ae best (5,20,4)", "conv2d_ae", conv_best, STFT),
        ("conv2d_ae best + relu", "conv2d_ae", {**conv_best, "activation": "relu"}, STFT),
        ("mlp_ae (35,3,1.0) autoregressive", "mlp_ae", {"hidden": 35, "depth": 3}, STFT),
        (
            "mlp_ae (35,3,1.0) teacher forcing",
            "mlp_ae",
            {"hidden": 35, "depth": 3, "teacher_forcing": True},
            STFT,
        ),
        ("frame_ae quick (48, 256)", "frame_ae", {"frame_latent": 48, "hidden": 256}, STFT),
        (
            "frame_ae full (72, 512)",
            "frame_ae",
            {"frame_latent": 72, "hidden": 512},
            STFT,
        ),
        ("rnn_ae rnn hidden 30", "rnn_ae", {"hidden": 30}, STFT),
        ("rnn_ae gru hidden 30", "rnn_ae", {"cell": "gru", "hidden": 30}, STFT),
        ("audio_conv_ae addendum", "audio_conv_ae", {}, WAVE),
        ("vae best on conv latent", "vae", vae_best, (conv_latent,)),
        ("bounded_ae on audio latent", "bounded_ae", vae_best, (audio_latent,)),
        ("vq_vae on conv latent", "vq_vae", {}, (conv_latent,)),
        (
            "combined conv2d_ae + vae",
            "combined",
            {"outer_hparams": conv_best, "inner_hparams": vae_best},
            STFT,
        ),
    ]


def _batch(shape: tuple[int, ...], n: int, g: torch.Generator) -> torch.Tensor:
    if shape == WAVE:
        return torch.rand(n, *shape, generator=g) * 2 - 1
    if len(shape) == 1:
        return torch.randn(n, *shape, generator=g) * 0.1
    return torch.rand(n, *shape, generator=g)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Any, seconds: float, device: str = "cpu", max_iters: int = 50) -> float:
    """Mean seconds per call after two warm-ups, running until `seconds` or max_iters."""
    fn()
    fn()
    _sync(device)
    n, start = 0, time.perf_counter()
    while n < max_iters and (n == 0 or time.perf_counter() - start < seconds):
        fn()
        n += 1
    _sync(device)
    return (time.perf_counter() - start) / n


def bench(
    name: str,
    hp: dict[str, Any],
    shape: tuple[int, ...],
    batch: int,
    seconds: float,
    device: str = "cpu",
    amp: bool = False,
) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    model = build_model(name, hp, shape, device=device)
    x = _batch(shape, batch, g).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        # The Trainer's mixed precision: bf16 autocast, no loss scaling needed.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
            loss = model.loss(x, out, epoch=0)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()

    model.train()
    train_s = _timed(step, seconds, device)
    model.eval()
    with torch.no_grad():
        z = model.encode(x)
        decode_s = _timed(lambda: model.decode(z), seconds, device)
        encode_s = _timed(lambda: model.encode(x), seconds, device)
    return {
        "params": model.num_params(),
        "compression": model.compression,
        "train_sps": batch / train_s,
        "decode_xrt": batch * SECONDS_PER_SAMPLE / decode_s,
        "encode_xrt": batch * SECONDS_PER_SAMPLE / encode_s,
    }


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} ({platform.machine()}, {os.cpu_count()} CPUs)"
    return f"{os.cpu_count()}-core CPU, no GPU ({platform.machine()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per measurement")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast in training (cuda)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    if args.amp and not args.device.startswith("cuda"):
        parser.error("--amp needs --device cuda (the Trainer only autocasts on a GPU)")
    rows = []
    for label, name, hp, shape in cases():
        r = bench(name, hp, shape, args.batch, args.seconds, args.device, args.amp)
        line = (
            f"| {label} | {shape} | {r['params']:,} | {r['compression']:.1f} | "
            f"{r['train_sps']:.1f} | {r['decode_xrt']:,.0f} | {r['encode_xrt']:,.0f} |"
        )
        print(line, flush=True)
        rows.append(line)
    cmd = "python benchmarks/models.py " + " ".join(sys.argv[1:] if argv is None else argv)
    section = "\n".join(
        [
            "",
            f"## models ({dt.date.today().isoformat()})",
            "",
            f"Command: `{cmd.strip()}`. Machine: {_machine(args.device)}, torch "
            f"{torch.__version__}, 2 threads, denormals flushed, batch {args.batch}, plain Adam "
            f"(not fused){', bf16 autocast' if args.amp else ''}. Training = forward + loss + backward + Adam step; x real time = batch x 2 s / "
            "seconds per batch (decode: latent -> model output, no Griffin-Lim).",
            "",
            "| model | input | params | compression | train samples/s | decode x real time | "
            "encode x real time |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    if not args.no_write:
        path = Path(__file__).resolve().parent / "RESULTS.md"
        if not path.exists():
            path.write_text("# Benchmark results\n")
        with path.open("a") as fh:
            fh.write(section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
