"""Types for command-line numbers with a range: a bad value is refused by the parser, which names
its option, before any work starts (a negative seed used to fail deep in numpy, after the dataset
stage had run)."""

from __future__ import annotations

import argparse

# Seeds are offset (a trial's, an epoch's, a searcher's draws), and some of the libraries that
# take them want 32-bit unsigned seeds: this leaves room for the offsets.
MAX_SEED = 2**31 - 1


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def seed(text: str) -> int:
    """A seed: a whole number from 0 to MAX_SEED."""
    value = _whole(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SEED}, got {value}")
    return value


def positive_int(text: str) -> int:
    """A count of something there must be at least one of (CPUs)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
