"""Analyse one recording into files (AU table, JSON sidecar, optional overlay) or a DataFrame.

Files appear only when complete: the table and overlay are written under temporary names
and renamed at the end, and the sidecar, written last, is what marks an input as done.
`analyze_video(path, **options)` is the Python entry point; it takes the options of the
`analyze` command (`fgnet_video.options`) and runs the same code.
"""

from __future__ import annotations

import csv
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from fgnet_video.analysis.commit import OutputUnit, remove_stale_partials
from fgnet_video.analysis.guard import analysis_unit, check_outputs, single_outputs
from fgnet_video.analysis.sidecar import OutputPaths, failed_record, output_record, run_record
from fgnet_video.analysis.smoothing import DecisionSmoother
from fgnet_video.analysis.stream import (
    FaceStage,
    RunStats,
    ScoredFrame,
    Scorer,
    analyze_stream,
    rows_for,
    table_columns,
)
from fgnet_video.analysis.tables import in_layout, table_format, write_table
from fgnet_video.atomic import write_json
from fgnet_video.errors import error_line
from fgnet_video.face.pipeline import FacePipeline
from fgnet_video.face.saved_tracks import TrackReplay, TrackWriter
from fgnet_video.inference.engine import InferenceEngine
from fgnet_video.media.video import VideoReader
from fgnet_video.options import AnalyzeOptions, detector_for, face_worker_count


class _CsvRows:
    """Appends row groups to a CSV file as they arrive; the header comes from `columns`, so a
    run without a single row still writes a header-only table."""

    def __init__(self, path: Path, columns: list[str]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "w", newline="")
        self._columns = columns
        self._header = True

    def write(self, rows: pd.DataFrame) -> None:
        rows.to_csv(self._handle, header=self._header, index=False, float_format="%.6f",
                    quoting=csv.QUOTE_MINIMAL)
        self._header = False

    def finish(self) -> None:
        if self._header:
            self.write(pd.DataFrame(columns=self._columns))
        self._handle.close()

    def close(self) -> None:
        self._handle.close()


class _CollectedRows:
    """Keeps row groups in memory (the DataFrame API, Parquet output)."""

    def __init__(self, columns: list[str], path: Path | None = None,
                 fmt: str = "parquet"):
        self.columns, self.path, self.fmt = columns, path, fmt
        self.parts: list[pd.DataFrame] = []

    def write(self, rows: pd.DataFrame) -> None:
        self.parts.append(rows)

    def table(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=self.columns)
        return pd.concat(self.parts, ignore_index=True)

    def finish(self) -> None:
        if self.path is not None:
            write_table(self.table(), self.path, self.fmt)

    def close(self) -> None:
        self.parts.clear()


class TableRows:
    """The table's rows of scored frames: `rows_for`, then (with `options.smooth`) the
    decision smoothing (`fgnet_video.analysis.smoothing.DecisionSmoother`), then the column layout
    (`options.columns`); each resulting non-empty group goes to every sink, in frame order.
    Call `add` per group of scored frames and `finish` once at the end (smoothing holds up to
    `smooth`/2 seconds of rows back until then)."""

    def __init__(self, aus: tuple[int, ...], options: AnalyzeOptions,
                 sinks: list[Callable[[pd.DataFrame], None]]):
        self.aus, self.layout, self.sinks = aus, options.columns, sinks
        self.smoother = DecisionSmoother(options.smooth) if options.smooth else None

    def add(self, scored: list[ScoredFrame]) -> None:
        rows = rows_for(scored, self.aus)
        self._emit(rows if self.smoother is None else self.smoother.push(rows))

    def finish(self) -> None:
        if self.smoother is not None:
            self._emit(self.smoother.finish())

    def _emit(self, rows: pd.DataFrame) -> None:
        if len(rows):
            table = in_layout(rows, self.layout)
            for sink in self.sinks:
                sink(table)


def layout_columns(aus: tuple[int, ...], layout: str) -> list[str]:
    """The header of a table in column layout `layout`."""
    return list(in_layout(pd.DataFrame(columns=table_columns(aus)), layout).columns)


_stages = threading.local()  # this thread's kept face stage: (settings, workers, stage)


def keep_face_stages() -> None:
    """From now on the analyses of this thread share one face stage, as inside
    `face_stages_kept`, for as long as the process lives: for a process that runs one task
    after another and has no end of its own to close it at (a Ray worker); its detection
    processes stop with it."""
    _stages.keep = True


@contextmanager
def face_stages_kept() -> Iterator[None]:
    """Inside, the analyses of this thread share one face stage, built once per face
    settings and reset for each recording (a study's models and detection processes start
    once; the faces are those of a new pipeline); it is closed on leaving."""
    keep_face_stages()
    try:
        yield
    finally:
        _stages.keep = False
        _drop_kept()


def _close(stage: FaceStage) -> None:
    if hasattr(stage, "close"):
        stage.close()


def _drop_kept() -> None:
    """Close this thread's kept face stage, if any, and forget it."""
    kept = getattr(_stages, "kept", None)
    _stages.kept = None
    if kept is not None:
        _close(kept[3])


def face_device(engine: Scorer) -> str:
    """Where the face stage's networks run: the device of the model if this process can
    use it, else the CPU."""
    import torch

    device = engine.describe().device
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "cpu"
    return device


@contextmanager
def face_stage(path: str | os.PathLike, options: AnalyzeOptions,
               tracks_in: str | os.PathLike | None, engine: Scorer) -> Iterator[FaceStage]:
    """The face stage of one analysis: saved tracks replayed, or the face pipeline (its
    detections run ahead: the CNN's batched on the device, HOG's over several processes
    when `face_workers` asks for more than one): a new one, closed
    after the analysis, or this thread's kept one (`face_stages_kept`). Its networks
    (detector, descriptors) run where `face_device` says, or, when `engine` carries
    `face_networks` (a study's worker, `fgnet_video.study.face_server`), there."""
    if tracks_in is not None:
        yield TrackReplay(tracks_in, path, options.sampling, options.face)
        return
    workers = face_worker_count(options.face.face_workers, recordings=options.jobs)
    shared = getattr(engine, "face_networks", None)  # a study worker's (Scorer)
    device = shared.device if shared is not None else face_device(engine)
    keep = getattr(_stages, "keep", False)
    kept = getattr(_stages, "kept", None) if keep else None
    if kept is not None and kept[:3] == (options.face, workers, device):
        kept[3].reset()
        yield kept[3]
        return
    _drop_kept()  # one of other face settings, if any
    if workers > 1 or detector_for(options.face.detector) == "cnn":
        from fgnet_video.face.parallel import ParallelFacePipeline

        stage = ParallelFacePipeline(options.face, workers, device=device, shared=shared)
    else:
        stage = FacePipeline(options.face, device=device, shared=shared)
    if keep:
        _stages.kept = (options.face, workers, device, stage)
        yield stage
        return
    try:
        yield stage
    finally:
        _close(stage)


class OverlayFailedWarning(UserWarning):
    """The overlay of a recording could not be made; its table and sidecar were written."""


class _IsolatedOverlay:
    """An overlay whose failure never costs the table: the first error while opening,
    drawing, encoding or finishing it (an Exception, not an interrupt) aborts the overlay and
    is kept in `failure` (one line); every later call then does nothing."""

    def __init__(self, open_writer: Callable[[], Any]):
        self.failure: str | None = None
        self._writer = None
        self._writer = self._attempt(open_writer)

    def _attempt(self, action: Callable[[], Any]) -> Any:
        if self.failure is not None:
            return None
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - the overlay's failure is reported, not raised
            self.failure = error_line(exc)
            self.abort()
            return None

    def write(self, scored: ScoredFrame) -> None:
        self._attempt(lambda: self._writer.write(scored))

    def finish(self) -> None:
        self._attempt(self._writer.finish)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


def analyze_to_files(
    path: str | os.PathLike,
    engine: Scorer,
    outputs: OutputPaths,
    options: AnalyzeOptions | None = None,
    on_progress: Callable[[int, int], None] = lambda frames, faces: None,
    on_rows: Callable[[pd.DataFrame], None] = lambda rows: None,
    tracks_in: str | os.PathLike | None = None,
) -> RunStats:
    """Analyse `path` into `outputs` (each group of rows also goes to `on_rows`); with
    `tracks_in`, the faces come from those saved tracks instead of the face pipeline.

    Every output is written under its partial name and the whole set is committed at the end
    (`fgnet_video.analysis.commit.OutputUnit`): on any failure, the previous outputs (if any) are
    left as they were and no partial stays behind. Partials of killed runs are removed first. The
    table's format is `options.table_format`, else chosen by its suffix. A selection without frames
    gives a header-only table (`RunStats.frames` is 0).
    """
    from fgnet_video.analysis.overlay import OverlayWriter

    options = options or AnalyzeOptions()
    path = Path(path)
    started = time.time()
    sampling = options.sampling
    fmt = table_format(outputs.table, options.table_format)
    unit = OutputUnit(outputs.finals())
    remove_stale_partials([*outputs.finals(), outputs.failure_record])
    aus = engine.aus
    with VideoReader(path, fps=sampling.fps, start=sampling.start, end=sampling.end) as reader:
        table_part = unit.partial(outputs.table)
        columns = layout_columns(aus, options.columns)
        rows = (_CsvRows(table_part, columns) if fmt == "csv"
                else _CollectedRows(columns, table_part, fmt))
        overlay = None
        try:
            if outputs.overlay is not None:
                overlay = _IsolatedOverlay(
                    lambda: OverlayWriter(path, unit.partial(outputs.overlay), aus,
                                          audio_from=sampling.start))

            tracks = (TrackWriter(path, sampling, options.face) if outputs.tracks is not None
                      else None)

            table_rows = TableRows(aus, options, [rows.write, on_rows])

            def on_scored(scored: list[ScoredFrame]) -> None:
                table_rows.add(scored)
                for item in scored:
                    if overlay is not None:
                        overlay.write(item)
                    if tracks is not None:
                        tracks.add(item.frame, item.faces)

            with face_stage(path, options, tracks_in, engine) as faces:
                stats = analyze_stream(reader, engine, faces, on_scored, on_progress)
            table_rows.finish()
            rows.finish()
            recorded = {"table": output_record(table_part, outputs.table), "overlay": None,
                        "tracks": None}
            if overlay is not None:
                overlay.finish()
                if overlay.failure is None:
                    recorded["overlay"] = output_record(unit.partial(outputs.overlay),
                                                        outputs.overlay)
                else:
                    recorded["overlay"] = failed_record(outputs.overlay, overlay.failure)
                    unit.drop(outputs.overlay)
                    warnings.warn(f"{path}: the overlay failed ({overlay.failure}); the table "
                                  "and sidecar are written", OverlayFailedWarning, stacklevel=2)
            if tracks is not None:
                tracks.save(unit.partial(outputs.tracks))
                recorded["tracks"] = output_record(unit.partial(outputs.tracks), outputs.tracks)
            write_json(unit.partial(outputs.sidecar), run_record(
                path, engine.describe(), reader, options, stats, fmt, started, recorded,
                detector_for(options.face.detector)))
            unit.commit()
        except BaseException:
            rows.close()
            if overlay is not None:
                overlay.abort()
            unit.discard()
            raise
    return stats


def analyze_video(
    path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    overlay: bool | str | os.PathLike = False,
    engine: InferenceEngine | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Per-frame, per-face AU table of one video: the rows `fgnet-video analyze` writes.

    `options` are those of the `analyze` command by their field names in
    `fgnet_video.options` (fps, start, end, detector, detect_every, min_face_size,
    min_confidence, max_faces, align_method, weights, psp, dataset, features, offline, device,
    precision, batch_size, channels_last, cuda_graphs, compile, table_format, ...), with the
    same defaults; `columns="openface"` gives OpenFace's column layout
    (`fgnet_video.analysis.tables.in_layout`). With `output`, the table, its JSON sidecar and
    (with `overlay`: True or a path in the table's folder) the overlay video are written as
    well, exactly as the command writes them, after the same checks
    (`fgnet_video.analysis.guard`: no output may replace an input or a file of another
    finished analysis; OutputClash otherwise). Pass `engine` to reuse a loaded model across
    videos (the model options are then not used). A truncated stream is reported as a
    TruncatedVideoWarning.
    """
    from fgnet_video.media.video import TruncatedVideoWarning

    settings = AnalyzeOptions.from_kwargs(**options)
    if engine is None:
        engine = InferenceEngine.from_weights(**settings.model.engine_kwargs())
    aus = engine.aus
    rows = _CollectedRows(layout_columns(aus, settings.columns))
    if output is not None:  # planned and guarded as `analyze -o` plans and guards it
        outputs = single_outputs(output, overlay, settings.save_tracks)
        tracks_in = [Path(settings.tracks)] if settings.tracks is not None else []
        check_outputs([analysis_unit(Path(path), outputs)],
                      extra_inputs=settings.model.files() + tracks_in)
        stats = analyze_to_files(path, engine, outputs, settings, tracks_in=settings.tracks,
                                 on_rows=rows.write)
    else:
        sampling = settings.sampling
        table_rows = TableRows(aus, settings, [rows.write])
        with VideoReader(path, fps=sampling.fps, start=sampling.start,
                         end=sampling.end) as reader:
            with face_stage(path, settings, settings.tracks, engine) as faces:
                stats = analyze_stream(reader, engine, faces, table_rows.add)
        table_rows.finish()
    if stats.truncated:
        warnings.warn(f"{path}: truncated video: {stats.truncated}", TruncatedVideoWarning,
                      stacklevel=2)
    return rows.table()
