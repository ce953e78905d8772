"""`analyze` for one recording: a streaming pipeline from video to per-frame AU rows.

    decode thread (VideoReader) -> bounded queue
      -> face thread: detect/track, 68 landmarks, FFHQ alignment -> bounded queue
      -> this thread: batches of aligned faces -> FG-Net on the device -> rows, in frame order

Each frame becomes one row per face, or one row with success=0 when it has no face; rows
go to a sink (CSV file, DataFrame, ...) as soon as their frame is scored, so memory stays
flat whatever the recording's length.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fgnet_video.face.pipeline import Face, FacePipeline, FaceSettings
from fgnet_video.inference import InferenceEngine
from fgnet_video.outputs import au_columns
from fgnet_video.video import Frame, VideoReader, put_unless_stopped

ROW_COLUMNS = ["frame", "timestamp", "face_id", "success", "confidence", "x", "y", "w", "h"]
QUEUE_FRAMES = 32


@dataclass(frozen=True)
class SamplingSettings:
    """Which frames are analysed: every frame, or `fps` per second, between start and end (s)."""

    fps: float | None = None
    start: float | None = None
    end: float | None = None


@dataclass
class StageTimes:
    """Seconds spent in each stage (stages run concurrently, so they overlap in wall time).

    decode_wait: the face thread waiting for decoded frames; faces: detection, tracking,
    landmarks and alignment; model: FG-Net batches; output: writing rows (and overlay frames).
    """

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, stage: str, since: float) -> None:
        self.seconds[stage] += time.perf_counter() - since

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}


@dataclass
class RunStats:
    """What one analysis saw: counts, timing, and whether the stream was complete."""

    frames: int = 0
    faces: int = 0
    frames_without_face: int = 0
    wall_seconds: float = 0.0
    truncated: str | None = None
    stages: StageTimes = field(default_factory=StageTimes)

    def as_dict(self) -> dict:
        return {"frames": self.frames, "faces": self.faces,
                "frames_without_face": self.frames_without_face,
                "wall_seconds": round(self.wall_seconds, 3), "truncated": self.truncated,
                "stages": self.stages.as_dict()}


@dataclass
class ScoredFrame:
    """A frame with its faces and their AU scores (n_faces, n_aus)."""

    frame: Frame
    faces: list[Face]
    scores: np.ndarray


class _Failed:
    """Queue item: the face thread stopped on an exception."""

    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def _face_worker(reader: VideoReader, faces: FacePipeline, out: queue.Queue,
                 stop: threading.Event, times: StageTimes) -> None:
    """Run detection/tracking/alignment over the decoded frames, in order, into `out`."""
    def put(item: object) -> bool:
        return put_unless_stopped(out, item, stop)

    try:
        frames = iter(reader)
        while True:
            started = time.perf_counter()
            frame = next(frames, None)
            times.add("decode_wait", started)
            if frame is None:
                break
            started = time.perf_counter()
            found = faces.process(frame)
            times.add("faces", started)
            if not put((frame, found)):
                return
        put(_DONE)
    except BaseException as exc:  # noqa: BLE001 - forwarded to the consuming thread
        put(_Failed(exc))


def _tracked_frames(reader: VideoReader, faces: FacePipeline,
                    times: StageTimes) -> Iterator[tuple[Frame, list[Face]]]:
    """(frame, faces) in frame order, computed in a background thread."""
    out: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    stop = threading.Event()
    worker = threading.Thread(target=_face_worker, args=(reader, faces, out, stop, times),
                              name="faces", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.close()
        worker.join()


def rows_for(scored: list[ScoredFrame], aus: tuple[int, ...]) -> pd.DataFrame:
    """The output rows of scored frames: one per face (sorted by id) or one success=0 row."""
    records = []
    n_aus = len(aus)
    for item in scored:
        base = {"frame": item.frame.index, "timestamp": round(item.frame.time, 6)}
        if not item.faces:
            records.append({**base, "success": 0, "scores": np.full(n_aus, np.nan)})
        for face, scores in zip(item.faces, item.scores, strict=True):
            x, y, w, h = face.box
            records.append({**base, "face_id": face.face_id, "success": 1,
                            "confidence": face.confidence, "x": x, "y": y, "w": w, "h": h,
                            "scores": scores})
    table = pd.DataFrame.from_records(records, columns=[*ROW_COLUMNS, "scores"])
    scores = np.stack(table.pop("scores").to_list()) if records else np.zeros((0, n_aus))
    for name in ("face_id", "success"):
        table[name] = table[name].astype("Int64")
    for column, values in zip(au_columns(aus), _score_columns(scores), strict=True):
        table[column] = values
    return table


def _score_columns(scores: np.ndarray) -> Iterator[pd.Series]:
    """Per AU: the score (NaN without a face) and the 0/1 decision (empty without a face)."""
    for k in range(scores.shape[1]):
        column = scores[:, k]
        yield pd.Series(column)
        active = pd.Series((column > 0).astype(np.int64)).astype("Int64")
        active[np.isnan(column)] = pd.NA
        yield active


class FrameBatcher:
    """Groups consecutive frames until they hold `batch_size` faces, then scores them all."""

    def __init__(self, engine: InferenceEngine, times: StageTimes, max_frames: int = 64):
        self.engine = engine
        self.times = times
        self.max_frames = max_frames
        self._pending: list[tuple[Frame, list[Face]]] = []
        self._n_faces = 0

    def add(self, frame: Frame, faces: list[Face]) -> list[ScoredFrame]:
        """Queue a frame; returns the scored frames whenever a batch is complete."""
        self._pending.append((frame, faces))
        self._n_faces += len(faces)
        if self._n_faces >= self.engine.batch_size or len(self._pending) >= self.max_frames:
            return self.flush()
        return []

    def flush(self) -> list[ScoredFrame]:
        """Score every pending frame now."""
        pending, self._pending, self._n_faces = self._pending, [], 0
        images = [face.aligned for _, faces in pending for face in faces]
        n_aus = len(self.engine.loaded.aus)
        started = time.perf_counter()
        scores = self.engine.predict(images).scores if images else np.zeros((0, n_aus))
        self.times.add("model", started)
        scored, offset = [], 0
        for frame, faces in pending:
            scored.append(ScoredFrame(frame, faces, scores[offset:offset + len(faces)]))
            offset += len(faces)
        return scored


def analyze_stream(
    path: str | Path,
    engine: InferenceEngine,
    face_settings: FaceSettings | None = None,
    sampling: SamplingSettings | None = None,
    on_scored: Callable[[list[ScoredFrame]], None] = lambda _: None,
    on_progress: Callable[[int, int], None] = lambda frames, faces: None,
    reader: VideoReader | None = None,
) -> RunStats:
    """Analyse one video, calling `on_scored` with each group of scored frames in order.

    Raises UserError for an unreadable video; a stream that breaks off mid-way ends the
    analysis with the decodable frames and `RunStats.truncated` set.
    """
    sampling = sampling or SamplingSettings()
    if reader is None:
        reader = VideoReader(path, fps=sampling.fps, start=sampling.start, end=sampling.end)
    stats = RunStats()
    started = time.perf_counter()
    batcher = FrameBatcher(engine, stats.stages)
    faces = FacePipeline(face_settings or FaceSettings(max_faces=None))

    def emit(scored: list[ScoredFrame]) -> None:
        if not scored:
            return
        stats.frames += len(scored)
        stats.faces += sum(len(s.faces) for s in scored)
        stats.frames_without_face += sum(1 for s in scored if not s.faces)
        begin = time.perf_counter()
        on_scored(scored)
        stats.stages.add("output", begin)
        on_progress(stats.frames, stats.faces)

    for frame, found in _tracked_frames(reader, faces, stats.stages):
        emit(batcher.add(frame, found))
    emit(batcher.flush())
    stats.truncated = reader.truncated
    stats.wall_seconds = time.perf_counter() - started
    return stats
