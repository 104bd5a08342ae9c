"""The torch device a command was asked to use, refused in one line when this machine lacks it."""

from __future__ import annotations

import torch

from samplegen.errors import SamplegenError


class DeviceError(SamplegenError):
    """A device that is not a torch device, or one this machine does not have."""


def torch_device(requested: str | torch.device) -> torch.device:
    """`requested` as a torch.device; DeviceError when it names no device, or CUDA that torch
    cannot use here (torch's own error is a long assertion deep inside the first `.to()`)."""
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise DeviceError(f"--device {requested!r}: not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {requested}: torch sees no CUDA device on this machine")
    return device
