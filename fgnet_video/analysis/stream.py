"""`analyze` for one recording: a streaming pipeline from video to per-frame AU rows.

    decode thread (VideoReader) -> bounded queue
      -> face thread: detect/track, 68 landmarks, FFHQ alignment -> bounded queue
      -> this thread: batches of aligned faces -> FG-Net on the device -> rows, in frame order

(both threads are `fgnet_video.threads.background` stages; the caller owns the reader)

Each frame becomes one row per face, or one row with success=0 when it has no face; rows
go to a sink (CSV file, DataFrame, ...) as soon as their frame is scored, so memory stays
flat whatever the recording's length.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from fgnet_video.analysis.tables import au_columns, au_table
from fgnet_video.face.pipeline import Face, FacePipeline
from fgnet_video.media.video import Frame, VideoReader
from fgnet_video.options import SMALL_FACE_SIDE, FaceSettings
from fgnet_video.threads import background

if TYPE_CHECKING:
    from fgnet_video.inference.engine import EngineFacts, Prediction

ROW_COLUMNS = ["frame", "timestamp", "face_id", "person_id", "person", "success", "confidence",
               "x", "y", "w", "h", "small_face"]
QUEUE_FRAMES = 32
FACELESS_WAIT_S = 0.5  # frames without a face this long after the last face: write what waits


def table_columns(aus: tuple[int, ...]) -> list[str]:
    """The columns of analyze's table: ROW_COLUMNS, then per AU its score and decision."""
    return [*ROW_COLUMNS, *au_columns(aus)]


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


def _timed(frames: Iterable[Frame], times: StageTimes) -> Iterator[Frame]:
    """The frames, the wait for each counted as decode_wait."""
    frames = iter(frames)
    while True:
        started = time.perf_counter()
        frame = next(frames, None)
        times.add("decode_wait", started)
        if frame is None:
            return
        yield frame


def _faces_of(frames: Iterable[Frame], faces: FaceStage,
              times: StageTimes) -> Iterator[tuple[Frame, list[Face]]]:
    """(frame, its faces) for each frame in order: detection/tracking, landmarks, alignment,
    by the stage's `stream` when it has one (it reads ahead), else frame by frame. The
    faces stage's seconds exclude the decode wait."""
    if hasattr(faces, "stream"):
        found_faces = faces.stream(_timed(frames, times))
    else:
        found_faces = ((frame, faces.process(frame)) for frame in _timed(frames, times))
    try:
        while True:
            started, waited = time.perf_counter(), times.seconds["decode_wait"]
            item = next(found_faces, None)
            if item is None:
                return
            times.add("faces", started)
            times.seconds["faces"] -= times.seconds["decode_wait"] - waited
            yield item
    finally:
        found_faces.close()  # a stage's workers stop with the analysis


def rows_for(scored: list[ScoredFrame], aus: tuple[int, ...]) -> pd.DataFrame:
    """The output rows of scored frames: one per face (sorted by id) or one success=0 row
    with NaN scores and empty decisions (`fgnet_video.analysis.tables.au_table`). small_face
    is 1 for a face box under SMALL_FACE_SIDE px on its shorter side. face_id, person_id,
    person and small_face are empty on success=0 rows, person_id and person also when the
    face stage gives none (person: the name of a named person, `fgnet_video.face.person`)."""
    records, score_rows = [], []
    n_aus = len(aus)
    for item in scored:
        base = {"frame": item.frame.index, "timestamp": round(item.frame.time, 6)}
        if not item.faces:
            records.append({**base, "success": 0})
            score_rows.append(np.full(n_aus, np.nan))
        for face, scores in zip(item.faces, item.scores, strict=True):
            x, y, w, h = face.box
            records.append({**base, "face_id": face.face_id, "person_id": face.person_id,
                            "person": face.person, "success": 1, "confidence": face.confidence,
                            "x": x, "y": y, "w": w, "h": h,
                            "small_face": int(min(w, h) < SMALL_FACE_SIDE)})
            score_rows.append(scores)
    table = pd.DataFrame.from_records(records, columns=ROW_COLUMNS)
    for name in ("face_id", "person_id", "success", "small_face"):
        table[name] = table[name].astype("Int64")
    table["person"] = table["person"].astype("string")
    for name in ("confidence", "x", "y", "w", "h"):  # one format whatever the values
        table[name] = table[name].astype(np.float64)
    scores = np.stack(score_rows) if score_rows else np.zeros((0, n_aus))
    return pd.concat([table, au_table(scores, aus)], axis=1)


class Scorer(Protocol):
    """What scores aligned faces: a `fgnet_video.inference.engine.InferenceEngine`, or a
    `fgnet_video.study.model_server.ModelClient` (a model shared by several recordings' analyses,
    in another process). `batch_size` is how many faces it wants at a time. A ModelClient
    also carries `face_networks` (`fgnet_video.face.device_detections.SharedFaceNetworks`): the face
    stage's networks, run beside the model, which the face stage then uses."""

    batch_size: int

    @property
    def aus(self) -> tuple[int, ...]: ...

    def predict(self, images: list[np.ndarray]) -> Prediction: ...

    def describe(self) -> EngineFacts: ...


class FrameBatcher:
    """Groups consecutive frames until they hold `batch_size` faces (or `max_frames` frames),
    then scores them all. When frames without a face keep coming (a face left, a stretch
    without faces where the detector searches every frame: 0.1-2.5 s a frame with the CNN
    on a CPU), no batch fills: once a frame without a face comes FACELESS_WAIT_S after the
    last face (or, with no face waiting, after the first frame waiting), what waits is
    scored and written at once, so that such a stretch is written, and its progress
    reported, as it goes rather than 64 frames at a time."""

    def __init__(self, engine: Scorer, times: StageTimes, max_frames: int = 64,
                 clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.times = times
        self.max_frames = max_frames
        self.clock = clock
        self._pending: list[tuple[Frame, list[Face]]] = []
        self._n_faces = 0
        self._filled_at = 0.0  # when the last pending face came (or the first pending frame)

    def add(self, frame: Frame, faces: list[Face]) -> list[ScoredFrame]:
        """Queue a frame; returns the scored frames whenever a batch is complete, or when
        it stopped filling (class docstring)."""
        now = self.clock()
        if faces or not self._pending:
            self._filled_at = now
        self._pending.append((frame, faces))
        self._n_faces += len(faces)
        if (self._n_faces >= self.engine.batch_size or len(self._pending) >= self.max_frames
                or now - self._filled_at >= FACELESS_WAIT_S):
            return self.flush()
        return []

    def flush(self) -> list[ScoredFrame]:
        """Score every pending frame now."""
        pending, self._pending, self._n_faces = self._pending, [], 0
        images = [face.aligned for _, faces in pending for face in faces]
        n_aus = len(self.engine.aus)
        started = time.perf_counter()
        scores = self.engine.predict(images).scores if images else np.zeros((0, n_aus))
        self.times.add("model", started)
        scored, offset = [], 0
        for frame, faces in pending:
            scored.append(ScoredFrame(frame, faces, scores[offset:offset + len(faces)]))
            offset += len(faces)
        return scored


class FaceStage(Protocol):
    """What finds the faces of each frame, in order: a `FacePipeline` (detection, tracking,
    landmarks, alignment), a `fgnet_video.face.parallel.ParallelFacePipeline` (the same over
    several processes; it also has `stream(frames)`, which reads ahead) or a
    `fgnet_video.face.saved_tracks.TrackReplay` (saved tracks)."""

    def process(self, frame: Frame) -> list[Face]: ...


def analyze_stream(
    reader: VideoReader,
    engine: Scorer,
    faces: FaceStage | FaceSettings | None = None,
    on_scored: Callable[[list[ScoredFrame]], None] = lambda _: None,
    on_progress: Callable[[int, int], None] = lambda frames, faces: None,
) -> RunStats:
    """Analyse the frames of `reader` (opened and closed by the caller), calling `on_scored`
    with each group of scored frames in order. `faces` is the face stage, or the settings of
    a `FacePipeline` to make (default settings when None).

    A stream that breaks off mid-way ends the analysis with the decodable frames and
    `RunStats.truncated` set (the reader's reason).
    """
    stats = RunStats()
    started = time.perf_counter()
    batcher = FrameBatcher(engine, stats.stages)
    if faces is None or isinstance(faces, FaceSettings):
        faces = FacePipeline(faces or FaceSettings())

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

    tracked = background(_faces_of(reader, faces, stats.stages), maxsize=QUEUE_FRAMES,
                         name="faces")
    try:
        for frame, found in tracked:
            emit(batcher.add(frame, found))
    finally:
        tracked.close()
    emit(batcher.flush())
    stats.truncated = reader.truncated
    stats.wall_seconds = time.perf_counter() - started
    return stats
