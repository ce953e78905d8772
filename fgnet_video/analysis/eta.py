"""What a run will cost, said before it starts: device, precision, batch size, and an ETA
from a short measured warm-up.

The warm-up scores one blank face; when that was quick (under QUICK_PASS_SECONDS, or on a
GPU, where the first pass also builds kernels) a full batch is timed after it, so the rate
is a batch's throughput. On a CPU with the full-size model the one face is all it costs
(several seconds). The estimate counts one face per analysed frame and the model only (the
face stage runs beside it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fgnet_video.inference.engine import InferenceEngine

QUICK_PASS_SECONDS = 1.0
SLOW_RUN_SECONDS = 600.0  # on a CPU, longer runs get the advice to sample frames
SUGGESTED_FPS = 1


def engine_line(engine: InferenceEngine) -> str:
    """'cpu, fp32, batch 16, full-size model (bp4d)': where and how the model runs."""
    from fgnet_video.inference.precision import precision_name
    from fgnet_video.model.config import FULL

    config = engine.model.config
    size = "full-size" if config.resolution == FULL.resolution else "reduced"
    return (f"{engine.device}, {precision_name(engine.dtype)}, batch {engine.batch_size}, "
            f"{size} model ({engine.loaded.dataset}, features {','.join(config.features)})")


def measure_faces_per_second(engine: InferenceEngine) -> float:
    """Faces per second of `engine` on blank aligned faces (see the module docstring)."""
    size = engine.image_size
    one = _timed(engine, np.zeros((1, size, size, 3), np.uint8))
    if one >= QUICK_PASS_SECONDS and engine.device.type != "cuda":
        return 1.0 / one
    batch = engine.batch_size
    return batch / _timed(engine, np.zeros((batch, size, size, 3), np.uint8))


def _timed(engine: InferenceEngine, faces: np.ndarray) -> float:
    started = time.perf_counter()
    engine.predict(faces)
    return max(time.perf_counter() - started, 1e-6)


def eta_line(frames: int | None, faces_per_second: float, device_type: str) -> str:
    """One line with the expected model time for `frames` frames (one face each), and on a
    CPU the advice to sample frames when that is long."""
    if not frames:
        return f"about {faces_per_second:.3g} faces/s (the video's length is unknown)"
    seconds = frames / faces_per_second
    line = (f"about {_duration(seconds)} for {frames} frames at {faces_per_second:.3g} "
            "faces/s (one face per frame)")
    if device_type == "cpu" and seconds > SLOW_RUN_SECONDS:
        line += (f"; on a CPU, try --fps {SUGGESTED_FPS} for a quicker pass, or run on a GPU")
    return line


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
