"""IEEE fp32 on a CUDA device: `with exact_fp32(device): ...` turns TF32 off while inside.

cuDNN runs fp32 convolutions in TF32 (a 10-bit mantissa) by default on Ampere and later
GPUs. Measured on an H200 with the release's reference checkpoints (benchmarks/gpu_check.py,
parity step): TF32 moved FG-Net's heatmaps from the release's by up to 5.5e-3 (mean 4.9e-4)
where the release's tolerance is 1e-3 (mean 1e-4). The face stage's networks (dlib's
detector and descriptor, `fgnet_video.face`) promise dlib's numbers in fp32 too, so every
fp32 network of fgnet-video runs inside this block on CUDA; under bf16/fp16 autocast it
keeps the fp32 islands fp32.

torch's TF32 switches are process-wide, and the model, the detector and the descriptor run
in different threads at once. So the block is counted: the first thread in turns TF32 off
(saving the switches), the last one out restores them; in between, every thread sees IEEE
fp32, also one running fp32 GPU work of its own outside any block. Nothing changes on the
CPU.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_lock = threading.Lock()
_inside = 0  # exact_fp32 blocks on CUDA open now, in any thread
_saved: list[tuple[object, str, object]] = []  # the switches as they were before the first


def tf32_switches() -> list[tuple[object, str, object]]:
    """(object, attribute, IEEE value) of torch's TF32 switches for convolutions and matmuls:
    the fp32_precision API where torch has it (mixing it with the older allow_tf32 flags is
    an error there), else the allow_tf32 flags."""
    import torch

    backends = torch.backends
    conv = getattr(backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(conv, "fp32_precision", "ieee"),
                (backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(backends.cudnn, "allow_tf32", False), (backends.cuda.matmul, "allow_tf32", False)]


@contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """While inside (in any thread), fp32 convolutions and matmuls on CUDA run in IEEE fp32;
    the switches are restored when the last block open in the process ends."""
    global _inside
    if device.type != "cuda":
        yield
        return
    with _lock:
        if _inside == 0:
            switches = tf32_switches()
            _saved[:] = [(owner, name, getattr(owner, name)) for owner, name, _ in switches]
            try:
                for owner, name, value in switches:
                    setattr(owner, name, value)
            except BaseException:
                _restore()
                raise
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                _restore()


def _restore() -> None:
    """The switches as they were before the first open block (under `_lock`)."""
    for owner, name, value in _saved:
        setattr(owner, name, value)
    _saved.clear()
