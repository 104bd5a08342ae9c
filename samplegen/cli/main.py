"""Entry point of the `samplegen` command: builds the parser from one module per command group.

Command modules are imported only when the parser is built, and each module imports its heavy
dependencies (torch, ray) inside its handlers, so `samplegen --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from samplegen.errors import Interrupted, SamplegenError
from samplegen.interrupts import terms_as_ctrl_c
from samplegen.redact import redacted_console

# Each module defines `register(subparsers)`, which adds its sub-command(s) and sets `func`.
COMMAND_MODULES: tuple[str, ...] = (
    "samplegen.cli.library",
    "samplegen.cli.data",
    "samplegen.cli.tune",
    "samplegen.cli.train",
    "samplegen.cli.evaluate",
    "samplegen.cli.generate",
    "samplegen.cli.report",
    "samplegen.cli.export",
    "samplegen.cli.run",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command group that is installed."""
    parser = argparse.ArgumentParser(
        prog="samplegen",
        description="Grow new instrument sounds from one-note samples with small latent models.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not built yet
                continue
            raise
        module.register(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command that `argv` names, descending through its words."""
    for word in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            break
        if word in actions[0].choices:
            parser = actions[0].choices[word]
        elif not word.startswith("-"):  # options of a parser before its command (--debug)
            break
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse reports these from the top-level parser, whose usage names no option of the
        # command that was mistyped; the command's own parser says it with its usage.
        _command_parser(parser, sys.argv[1:] if argv is None else list(argv)).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # Credentials written into a storage URI are never printed (they would end up in CI logs).
    with redacted_console():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; its errors and interrupts become a message and an exit code."""
    try:
        with terms_as_ctrl_c():
            result = args.func(args)
    except Interrupted as exc:
        print(f"samplegen: {exc}", file=sys.stderr)
        return 130
    except SamplegenError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"samplegen: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file or folder the command cannot read or write (a folder without permission, a full
        # disk): named with the system's reason, not shown as samplegen's own failure.
        if args.debug:
            traceback.print_exc()
        print(f"samplegen: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # A command whose work resumes names how (`set_defaults(on_interrupt=...)`).
        hint = getattr(args, "on_interrupt", None)
        print(f"samplegen: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    return int(result or 0)


def _os_error(exc: OSError) -> str:
    """`exc` as one line that names the file(s) and says why."""
    if exc.filename is None:
        return str(exc)
    names = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{names}: {exc.strerror or exc}"


if __name__ == "__main__":
    sys.exit(main())
