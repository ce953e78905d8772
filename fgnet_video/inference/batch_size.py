"""How many faces go into one forward pass when `--batch-size auto`: on a GPU the largest
batch whose measured memory need fits the free memory, on the CPU as many as fit in the
available host memory (estimated from the full model's measured figure).

    device: fixed + n * per_face <= USABLE_MEMORY * free   (fixed, per_face measured by
            `measure_face_memory` at batches 1 and MEMORY_PROBE_BATCH), 1 <= n <= AUTO_BATCH_CAP
    CPU:    n * cpu_face_bytes(config) <= USABLE_MEMORY * available, 1 <= n <= AUTO_BATCH_CPU
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

AUTO_BATCH_CAP = 64  # 64 faces are ~32 TFLOP of work per batch: enough to fill a GPU
AUTO_BATCH_CPU = 16  # the most faces per CPU batch: larger batches are no faster there
# Peak memory one more face costs the full-size model in fp32 on a CPU, measured with
# `python benchmarks/cpu_memory.py` (batches 1 and 2: 2.23 and 2.83 GiB peak, 1.52 after load).
FULL_CPU_FACE_BYTES = 615 * 2**20
MEMORY_PROBE_BATCH = 4
USABLE_MEMORY = 0.8  # of the free device memory; the rest absorbs fragmentation


def measure_face_memory(run: Callable[[int], object], device: torch.device) -> tuple[int, int]:
    """(fixed, per_face) bytes of device memory a forward pass allocates beyond what is
    resident: peaks at batch 1 and MEMORY_PROBE_BATCH, fitted by a line."""

    def peak(n: int) -> int:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run(n)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base

    one, probe = peak(1), peak(MEMORY_PROBE_BATCH)
    per_face = max((probe - one) // (MEMORY_PROBE_BATCH - 1), 1)
    return max(one - per_face, 0), per_face


def fit_batch_size(free_bytes: int, fixed: int, per_face: int,
                   cap: int = AUTO_BATCH_CAP, usable: float = USABLE_MEMORY) -> int:
    """The largest batch whose estimated peak, fixed + n * per_face, fits in `usable` of the
    free memory; between 1 and `cap`."""
    fits = int((free_bytes * usable - fixed) // per_face)
    return max(1, min(cap, fits))


def activation_elements(config) -> int:
    """Sum over the generator's levels of channels x side^2 (levels 4, 8, 16, ... px): what
    a face's activations scale with."""
    return sum(ch * (4 * 2**level) ** 2 for level, ch in enumerate(config.generator_channels))


def cpu_face_bytes(config) -> int:
    """Estimated peak memory per face on a CPU: the full model's measured figure, scaled by
    `activation_elements` (an over-estimate for models that skip their late levels)."""
    from fgnet_video.model.config import FULL

    return max(1, FULL_CPU_FACE_BYTES * activation_elements(config)
               // activation_elements(FULL))


def available_host_memory() -> int:
    """Bytes the system can give a new allocation without swapping (MemAvailable on Linux,
    else the free physical pages)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_batch_size(config, available: int | None = None) -> int:
    """The CPU batch: as many faces (at most AUTO_BATCH_CPU) as fit in `USABLE_MEMORY` of
    the available memory (the model's weights are loaded already)."""
    available = available_host_memory() if available is None else available
    return fit_batch_size(available, 0, cpu_face_bytes(config), cap=AUTO_BATCH_CPU)


def free_device_memory(device: torch.device) -> int:
    """Bytes a new allocation on `device` can use: the driver's free memory plus what
    PyTorch's cache holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def auto_batch_size(device: torch.device, config, run: Callable[[int], object]) -> int:
    """The batch of `--batch-size auto`: on the CPU `cpu_batch_size(config)`; on a GPU the
    largest that fits its free memory, from the need of `run(n)` (a forward pass of n faces)
    measured by `measure_face_memory`; 1 when the probe itself runs out of memory."""
    if device.type != "cuda":
        chosen = cpu_batch_size(config)
        log.info("CPU batch size %d (%.0f MiB per face estimated)", chosen,
                 cpu_face_bytes(config) / 2**20)
        return chosen
    try:
        fixed, per_face = measure_face_memory(run, device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        log.warning("out of memory on %s while probing the batch size: using 1", device)
        return 1
    chosen = fit_batch_size(free_device_memory(device), fixed, per_face)
    log.info("batch size %d (%.0f MiB per face, %.0f MiB fixed)", chosen, per_face / 2**20,
             fixed / 2**20)
    return chosen
