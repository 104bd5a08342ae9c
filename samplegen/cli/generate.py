"""`samplegen generate KIND MODEL ...`: new sounds from a trained model directory."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from samplegen.cli import arg_types
from samplegen.errors import SamplegenError

AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc


def _expand(paths: list[str]) -> list[tuple[Path, bool]]:
    """Files as given; folders become their audio files (sorted). Each with whether it came from
    a folder (a bad one is then skipped, not fatal)."""
    out: list[tuple[Path, bool]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
            out.extend((f, True) for f in found)
        elif p.exists():
            out.append((p, False))
        else:
            raise SamplegenError(f"{p}: no such file or folder")
    return out


def _files(named: dict[str, str]) -> list[str]:
    """The paths of arguments that each name one sound (`named`: argument -> path); a folder there
    is refused, naming the argument, rather than taken for its many files."""
    for argument, path in named.items():
        if Path(path).is_dir():
            raise SamplegenError(
                f"{argument} {path}: is a folder; give one sound file (folders are taken by "
                "`generate reconstruct`, `examples` and --reference)"
            )
    return list(named.values())


def _load(paths: list[str], limit: int, codec: Any, skipped: list[dict[str, str]]) -> list[Any]:
    """At most `limit` readable sounds of `paths`. A file named on the command line must read; one
    found in a folder that does not (unreadable, silent, ...) is skipped, said on stderr and
    added to `skipped`, as `data prepare` does: one bad file does not throw away the folder."""
    from samplegen.generate import sounds as S

    out: list[Any] = []
    for path, in_folder in _expand(paths):
        if len(out) >= limit:
            break
        try:
            out.extend(S.load_inputs([path], codec))
        except SamplegenError as exc:
            if not in_folder:
                raise
            skipped.append({"file": str(path), "reason": str(exc)})
            print(f"skipped: {exc}", file=sys.stderr)
    return out


def _accept_negative_lists(p: argparse.ArgumentParser) -> None:
    """Let `--values -2,-1,0` through: argparse would take "-2,-1,0" for an option name.

    argparse decides with the parser's negative-number pattern; widening it to comma-separated
    numbers is safe here because this parser has no option that looks like a number.
    """
    p._negative_number_matcher = re.compile(r"^-\d[\d.,eE+-]*$")  # noqa: SLF001


def _common(p: argparse.ArgumentParser, reference: bool = False) -> None:
    p.add_argument("model", help="trained model directory (config.json + weights.safetensors)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default ./sounds/KIND)")
    p.add_argument(
        "--seed", type=arg_types.seed, default=0, help="seed of every random choice (default 0)"
    )
    p.add_argument(
        "--griffin-lim-iters",
        type=int,
        default=64,
        help="Griffin-Lim iterations for STFT models (default 64)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--no-spectrograms", action="store_true", help="skip the spectrogram PNG per sound"
    )
    if reference:
        p.add_argument(
            "--reference",
            nargs="+",
            default=[],
            metavar="WAV_OR_DIR",
            help="reference sounds whose latents give the empirical distribution (needed for "
            "a model with neither a prior nor fitted codes: see `samplegen fit-codes`)",
        )
        p.add_argument(
            "--reference-limit",
            type=arg_types.positive_int,
            default=256,
            help="at most this many reference files (default 256)",
        )


def register(subparsers: Any) -> None:
    """Add `generate` and its six sub-commands."""
    gen = subparsers.add_parser(
        "generate",
        help="make new sounds from a trained model",
        description="Make new sounds from a trained model: WAVs, spectrogram PNGs, manifest.json.",
    )
    sub = gen.add_subparsers(dest="kind", metavar="KIND", required=True)

    p = sub.add_parser("reconstruct", help="sounds through encode/decode (style transfer)")
    _common(p)
    p.add_argument("inputs", nargs="+", help="input sounds (files or folders)")
    p.add_argument(
        "--variations",
        type=int,
        default=0,
        help="also this many posterior samples per input (variational models; default 0)",
    )

    p = sub.add_parser("interpolate", help="between two sounds' latent means")
    _common(p)
    p.add_argument("a", help="the first sound (a file)")
    p.add_argument("b", help="the last sound (a file)")
    p.add_argument(
        "--steps", type=int, default=5, help="sounds from a to b, both ends included (default 5)"
    )

    p = sub.add_parser("grid", help="bilinear 2-D grid between four corner sounds")
    _common(p)
    p.add_argument(
        "corners", nargs=4, metavar="CORNER", help="top-left top-right bottom-left bottom-right"
    )
    p.add_argument(
        "--size", type=int, default=9, help="sounds per side: SIZE x SIZE in all (default 9: 81)"
    )

    p = sub.add_parser(
        "random", help="samples from the training codes' distribution, the prior or references"
    )
    _common(p, reference=True)
    p.add_argument("--count", type=int, default=8, help="how many sounds (default 8)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="spread of the draws around the distribution's centre: below 1 closer to typical "
        "sounds, above 1 stranger ones (default 1)",
    )
    p.add_argument(
        "--distribution",
        choices=("auto", "fitted", "prior"),
        default="auto",
        help="where latents come from: fitted = the Gaussian mixture of the training notes' codes "
        "stored with the model, prior = the model's own prior, auto = --reference sounds if given, else "
        "fitted if the model has it, else prior (default auto)",
    )

    p = sub.add_parser("perturb", help="growing noise around one sound's latent")
    _common(p, reference=True)
    p.add_argument("a", help="the sound to perturb (a file)")
    p.add_argument(
        "--levels",
        type=_floats,
        default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        help="noise levels, a comma-separated list (not a count): each is the noise's std in "
        "units of each latent's spread (default 0,0.1,0.2,0.3,0.4,0.5)",
    )
    p.add_argument("--per-level", type=int, default=1, help="noise draws per level (default 1)")

    p = sub.add_parser("sweep", help="each latent dimension alone")
    _accept_negative_lists(p)
    _common(p, reference=True)
    p.add_argument(
        "--values",
        type=_floats,
        default=[-2.0, -1.0, 0.0, 1.0, 2.0],
        help="where each swept latent goes, a comma-separated list (not a count), in units of "
        "its spread around its mean (default -2,-1,0,1,2)",
    )
    p.add_argument(
        "--dims", type=_ints, default=None, help="dimensions to sweep (default all, up to 16)"
    )

    p = sub.add_parser("examples", help="every kind at once (for a run folder's audition page)")
    _common(p)
    p.add_argument("inputs", nargs="+", help="at least 4 input sounds (files or folders)")
    p.add_argument("--limit", type=int, default=8, help="use at most this many inputs")
    p.add_argument(
        "--grid-size", type=int, default=5, help="the grid's sounds per side (default 5)"
    )

    gen.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from samplegen.generate import sounds as S
    from samplegen.generate.latent import load_space
    from samplegen.generate.render import RenderSettings, render_plan

    space = load_space(args.model, device=args.device)
    codec = space.codec
    skipped: list[dict[str, str]] = []

    def inputs(paths: list[str]) -> list[S.SoundInput]:
        return _load(paths, 10_000, codec, skipped)

    reference = []
    if getattr(args, "reference", None):
        reference = _load(args.reference, args.reference_limit, codec, skipped)
        if len(reference) < 2:
            # Without this, sounds would come from another distribution than the one asked for.
            raise SamplegenError(
                f"--reference: {len(reference)} usable sound(s) among the files given "
                f"({len(skipped)} skipped); give at least 2"
            )
    kind = args.kind
    settings = RenderSettings(
        griffin_lim_iters=args.griffin_lim_iters,
        seed=args.seed,
        spectrograms=not args.no_spectrograms,
        device=args.device,
    )
    if kind == "examples":
        from samplegen.generate.examples import ExampleSettings, generate_examples

        out = args.out if args.out is not None else Path("sounds")
        written = generate_examples(
            space,
            _load(args.inputs, args.limit, codec, skipped),
            out,
            settings=ExampleSettings(grid_size=args.grid_size),
            render=settings,
            model_path=args.model,
        )
        print(f"examples written to {out}: {', '.join(written)}")
        return 0
    if kind == "reconstruct":
        plan = S.plan_reconstruct(
            space, inputs(args.inputs), variations=args.variations, seed=args.seed
        )
    elif kind == "interpolate":
        a, b = inputs(_files({"A": args.a, "B": args.b}))
        plan = S.plan_interpolate(space, a, b, steps=args.steps)
    elif kind == "grid":
        corners = _files({f"CORNER {i + 1}": c for i, c in enumerate(args.corners)})
        plan = S.plan_grid(space, inputs(corners), size=args.size)
    elif kind == "random":
        plan = S.plan_random(
            space,
            count=args.count,
            temperature=args.temperature,
            seed=args.seed,
            reference=reference,
            distribution=args.distribution,
        )
    elif kind == "perturb":
        (a,) = inputs(_files({"A": args.a}))
        plan = S.plan_perturb(
            space,
            a,
            levels=args.levels,
            per_level=args.per_level,
            seed=args.seed,
            reference=reference,
        )
    else:
        plan = S.plan_sweep(space, values=args.values, dims=args.dims, reference=reference)
    if skipped:  # in the manifest too: a skipped file never silently disappears
        plan = dataclasses.replace(plan, settings={**plan.settings, "skipped_inputs": skipped})
    out = args.out if args.out is not None else Path("sounds") / kind
    manifest = render_plan(space, plan, out, settings, model_path=args.model)
    print(f"{len(plan.sounds)} {kind} sound(s) written to {out} (manifest: {manifest})")
    return 0
