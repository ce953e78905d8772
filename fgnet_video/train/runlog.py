"""The run's files: options (run.json), the JSONL metrics log, and stop requests by signal."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from fgnet_video.atomic import write_json
from fgnet_video.errors import UserError
from fgnet_video.train.options import TrainOptions

RUN_FILE = "run.json"
LOG_FILE = "metrics.jsonl"


def write_run_options(out: Path, options: TrainOptions) -> None:
    write_json(out / RUN_FILE, options.to_dict())


def read_run_options(out: Path | str) -> TrainOptions:
    """The options a run in `out` was started with (for --resume)."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        raise UserError(f"nothing to resume in {out}: no {RUN_FILE}")
    try:
        return TrainOptions.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{path}: unreadable run options ({exc})") from None


def run_options(given: dict) -> TrainOptions:
    """The options of the run asked for by the options a user gave (TrainOptions fields, those
    left out absent: `fgnet_video.settings.given`). With `resume`: the stored options of the
    run in `out` with the given ones applied (TrainOptions.resumed_with); otherwise a new
    run's, which needs `dataset`, `data` and `out`."""
    if not given.get("out"):
        raise UserError("--out is required: the run folder")
    if given.get("resume"):
        return read_run_options(given["out"]).resumed_with(given)
    if not given.get("dataset") or not given.get("data"):
        raise UserError("--dataset and --data are required (or --resume an existing run)")
    return TrainOptions(**given)


class MetricsLog:
    """Appends one JSON object per line (flushed each time); a disabled log writes nothing.

    Resuming truncates the log to its size at the resume point, so records of iterations
    that are run again do not appear twice."""

    def __init__(self, path: Path, enabled: bool, truncate_to: int | None = None):
        self.path = path
        self.enabled = enabled
        self._stream = None
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(path, "a+b")  # noqa: SIM115 - closed in close()
            if truncate_to is not None:
                self._stream.truncate(truncate_to)
            self._stream.seek(0, 2)

    def write(self, record: dict) -> None:
        if self._stream is not None:
            line = json.dumps({"time": round(time.time(), 3), **record}) + "\n"
            self._stream.write(line.encode())
            self._stream.flush()

    def size(self) -> int:
        return self._stream.tell() if self._stream is not None else 0

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class StopRequest:
    """While active, SIGINT/SIGTERM set `requested` (a second SIGINT interrupts at once), so
    the loop can stop at an iteration boundary and save its resume state."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
