"""What a run will cost: where the model runs, and the time left, measured on the run itself.

The time left is not guessed from a warm-up before the run (a blank face on a cold model
says nothing of decode, the face stage or the first batch's start-up: such guesses were off
10-40x on short jobs). It is measured: from the first frames the run has written on, in
windows of ETA_AFTER_S seconds, the rate is frames written / time taken in the window. The
first windows of a run are often not its pace (the face stage's detections run ahead of
the frames written, the first batches start up), so one line says the time left (frames
still to come / rate) once two consecutive windows agree within RATE_AGREEMENT, or at the
latest after ETA_LATEST_S seconds (with the last window's rate). A run finished sooner
needs no estimate and gets none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fgnet_video.inference.engine import InferenceEngine

ETA_AFTER_S = 2.0  # seconds of one measuring window
RATE_AGREEMENT = 0.5  # two windows agree when their rates differ by at most this share
ETA_LATEST_S = 30.0  # the time left is said by then, agreeing windows or not
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


class TimeLeft:
    """The measured time left of one recording (module docstring): feed it the frames
    written so far; `update` returns the line once, when it is due, else None."""

    def __init__(self, total: int | None, device_type: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.device_type, self.clock = total, device_type, clock
        self._first: float | None = None  # when the first frames were written
        self._window: tuple[int, float] | None = None  # (frames, time) at its start
        self._last_rate: float | None = None  # the previous window's rate
        self._said = False

    def update(self, frames: int) -> str | None:
        now = self.clock()
        if self._said:
            return None
        if self._window is None:
            self._first, self._window = now, (frames, now)
            return None
        start_frames, start = self._window
        if now - start < ETA_AFTER_S or frames <= start_frames:
            return None
        rate = (frames - start_frames) / (now - start)
        agreed = (self._last_rate is not None
                  and abs(rate - self._last_rate) <= RATE_AGREEMENT * self._last_rate)
        if agreed or now - self._first >= ETA_LATEST_S:
            self._said = True
            return time_left_line(self.total, frames, rate, self.device_type)
        self._last_rate, self._window = rate, (frames, now)
        return None


def time_left_line(total: int | None, done: int, frames_per_second: float,
                   device_type: str) -> str:
    """One line with the time left for frames `done`..`total` at the measured rate, and on a
    CPU the advice to sample frames when that is long."""
    rate = f"{frames_per_second:.3g} frames/s"
    if not total:
        return f"{rate} (the video's length is unknown)"
    left = max(total - done, 0)
    seconds = left / frames_per_second
    line = f"about {_duration(seconds)} left for {left} more of {total} frames at {rate}"
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
