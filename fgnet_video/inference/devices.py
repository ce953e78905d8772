"""Choosing the torch device from a user's `--device auto|cpu|cuda[:i]`, and true fp32 on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(object, attribute, IEEE value) of torch's TF32 switches for convolutions and matmuls:
    the fp32_precision API where torch has it (mixing it with the older allow_tf32 flags is
    an error there), else the allow_tf32 flags."""
    backends = torch.backends
    conv = getattr(backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(conv, "fp32_precision", "ieee"),
                (backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(backends.cudnn, "allow_tf32", False), (backends.cuda.matmul, "allow_tf32", False)]


@contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """While inside, fp32 convolutions and matmuls on a CUDA device run in IEEE fp32, not
    TF32 (whose 10-bit mantissa cuDNN uses for fp32 convolutions by default on Ampere and
    later GPUs). Measured on an H200 with the release's reference checkpoints
    (benchmarks/gpu_check.py, parity step): TF32 moved FG-Net's heatmaps from the release's
    by up to 5.5e-3 (mean 4.9e-4); the release's tolerance is 1e-3 (mean 1e-4). Under
    bf16/fp16 autocast it keeps the fp32 islands fp32. The switches are process-wide: they
    are restored on leaving, and a thread running fp32 GPU work alongside sees them too.
    Nothing changes on the CPU."""
    if device.type != "cuda":
        yield
        return
    switches = _tf32_switches()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in switches]
    for owner, name, value in switches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def current_device(device: torch.device) -> AbstractContextManager:
    """`device` as CUDA's current device while inside (so that streams, events, graphs and
    kernel checks made without a device use it, e.g. on cuda:1); nothing for other devices."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()
