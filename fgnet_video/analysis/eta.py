"""What a run will cost: where the model runs, and the time left, measured on the run itself.

The time left is not guessed from a warm-up before the run (a blank face on a cold model
says nothing of decode, the face stage or the first batch's start-up: such guesses were off
10-40x on short jobs). It is measured on the frames the run has written. The first
ETA_AFTER_S seconds after the first frames are a warm-up, left out (the face stage's
detections run ahead of the frames written, the first batches start up). From then on,
every ETA_AFTER_S seconds, the rate is the frames written since the warm-up / the time
since it: all the run's pace so far, not the last few seconds' (frames come in model
batches, and the number of faces per frame changes, so a short window jumps), and only once
a keyframe period (`detect_every` frames) has been written since the warm-up: a keyframe's
detection holds the frames up, then the frames tracked meanwhile come out in a burst, so a
rate over less than a period can be a burst's (a 4K excerpt with the CNN, where one
detection costs many frames' time, took 2.7x what the line said without this). One line
says the time left (frames still to come / rate) once two consecutive rates agree within
RATE_AGREEMENT, or with the first rate after ETA_LATEST_S seconds (the first once a period
is written, when that is later: a slow 4K run). A run finished sooner, or with
nothing left to write when the line would come, needs no estimate and gets none.
`python benchmarks/eta_accuracy.py` compares the line with the time the run then took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fgnet_video.inference.engine import InferenceEngine

ETA_AFTER_S = 2.0  # the warm-up, then the time between two measurements of the rate
RATE_AGREEMENT = 0.5  # two consecutive rates agree when they differ by at most this share
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

    def __init__(self, total: int | None, device_type: str, period: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`period`: frames in one keyframe period (`detect_every`) of the face stage."""
        self.total, self.device_type, self.clock = total, device_type, clock
        self.period = max(period, 1)
        self._first: float | None = None  # when the first frames were written
        self._base: tuple[int, float] | None = None  # (frames, time) at the warm-up's end
        self._checked = 0.0  # when the rate was last measured
        self._last_rate: float | None = None  # the rate measured then
        self._said = False

    def update(self, frames: int) -> str | None:
        now = self.clock()
        if self._said:
            return None
        if self._first is None:
            self._first = self._checked = now
            return None
        if now - self._checked < ETA_AFTER_S:
            return None
        self._checked = now
        if self._base is None:  # the warm-up is over: the pace is measured from here
            self._base = (frames, now)
            return None
        base_frames, base_time = self._base
        if frames - base_frames < self.period:
            return None
        rate = (frames - base_frames) / (now - base_time)
        agreed = (self._last_rate is not None
                  and abs(rate - self._last_rate) <= RATE_AGREEMENT * self._last_rate)
        self._last_rate = rate
        if not (agreed or now - self._first >= ETA_LATEST_S):
            return None
        self._said = True
        if self.total is not None and frames >= self.total:
            return None  # nothing left to say a time for
        return time_left_line(self.total, frames, rate, self.device_type)


def time_left_line(total: int | None, done: int, frames_per_second: float,
                   device_type: str) -> str:
    """One line with the time left for frames `done`..`total` at the measured rate, and on a
    CPU the advice to sample frames when that is long."""
    rate = f"{frames_per_second:.3g} frames/s"
    if not total:
        return f"{rate} (the video's length is unknown)"
    left = max(total - done, 0)
    seconds = left / frames_per_second
    line = f"{_duration(seconds)} left for {left} more of {total} frames at {rate}"
    if device_type == "cpu" and seconds > SLOW_RUN_SECONDS:
        line += (f"; on a CPU, try --fps {SUGGESTED_FPS} for a quicker pass, or run on a GPU")
    return line


def _duration(seconds: float) -> str:
    """'about 37 s', 'about 4 min', 'about 2.5 h', or 'under 1 s'."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
