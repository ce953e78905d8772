"""Choosing the torch device from a user's `--device auto|cpu|cuda[:i]` (IEEE fp32 on it:
`fgnet_video.fp32`)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from fgnet_video.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is the first CUDA GPU when there is one, else the CPU."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available to this torch build")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) present")
    elif device.type != "cpu":
        raise UserError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    return device


def current_device(device: torch.device) -> AbstractContextManager:
    """`device` as CUDA's current device while inside (so that streams, events, graphs and
    kernel checks made without a device use it, e.g. on cuda:1); nothing for other devices."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()
