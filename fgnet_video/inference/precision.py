"""Precisions: the dtype each `--precision` name stands for on a device, whether this CPU
computes reduced precision natively, and mixed precision as inference and training use it.

A CPU computes bf16 natively when it has AVX512-BF16 or AMX-BF16 (x86-64) or the BF16
extension (Arm). Elsewhere oneDNN converts every operand in software, which makes bf16
slower than fp32 (benchmarks/RESULTS.md has figures): `resolve_precision` warns in one line
when bf16 is asked for on such a CPU. fp16 is refused on the CPU. The names users give live
in `fgnet_video.options.PRECISION_NAMES`.
"""

from __future__ import annotations

import functools
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from fgnet_video.errors import UserError
from fgnet_video.options import PRECISION_NAMES

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16,
                                  "bf16": torch.bfloat16}

# CPU feature flags (as /proc/cpuinfo spells them) that give native bf16 arithmetic
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


class SlowPrecisionWarning(UserWarning):
    """A precision that this device only emulates (slower than fp32)."""


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The CPU feature flags in the text of /proc/cpuinfo (its first 'flags' line on x86,
    'Features' on Arm); empty when it has none."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (detected once per process): from the
    flags in /proc/cpuinfo on Linux, else from torch's own x86-64 probe (False where it has
    none)."""
    try:
        flags = cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags = frozenset()
    if flags:
        return bool(flags & NATIVE_BF16_FLAGS)
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe is not None and probe())


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The dtype of `name` on `device`: 'auto' is bf16 on GPUs that support it (else fp16)
    and fp32 on the CPU; fp16 on the CPU is refused; bf16 on a CPU without native bf16 is
    allowed with a SlowPrecisionWarning."""
    name = (name or "auto").lower()
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise UserError(f"unknown precision {name!r} (use {', '.join(PRECISION_NAMES)})")
    if device.type == "cpu" and name == "fp16":
        raise UserError("fp16 is not supported on the CPU (use fp32 or bf16)")
    if device.type == "cpu" and name == "bf16" and not cpu_has_native_bf16():
        warnings.warn("this CPU has no native bf16 (AVX512-BF16 or AMX): --precision bf16 "
                      "will be several times slower than fp32", SlowPrecisionWarning,
                      stacklevel=2)
    return DTYPES[name]


def precision_name(dtype: torch.dtype) -> str:
    """'fp32', 'fp16' or 'bf16'."""
    return next(name for name, value in DTYPES.items() if value == dtype)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device`, None for fp32."""
    dtype = resolve_precision(precision, device)
    return None if dtype == torch.float32 else dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed precision in `dtype` on `device`, or nothing (fp32) when dtype is None."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype)
