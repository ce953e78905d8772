"""Analyse one recording into files (AU table, JSON sidecar, optional overlay) or a DataFrame.

Files appear only when complete: the table and overlay are written under temporary names
and renamed at the end, and the sidecar, written last, is what marks an input as done.
`analyze_video(path, **options)` is the Python entry point; it takes the options of the
`analyze` command (`fgnet_video.options`) and runs the same code.
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fgnet_video import __version__
from fgnet_video.atomic import temporary_name, write_json
from fgnet_video.inference import InferenceEngine
from fgnet_video.options import AnalyzeOptions
from fgnet_video.outputs import table_format, write_table
from fgnet_video.pipeline import RunStats, ScoredFrame, analyze_stream, rows_for
from fgnet_video.video import VideoReader


@dataclass(frozen=True)
class OutputPaths:
    """Where one input's results go; `sidecar` exists only once the others are complete."""

    table: Path
    sidecar: Path
    overlay: Path | None = None

    @classmethod
    def for_table(cls, table: str | os.PathLike,
                  overlay: bool | str | os.PathLike = False) -> OutputPaths:
        """The outputs of a table at `table`: the sidecar beside it (`<stem>.json`) and, with
        `overlay` True, the overlay `<stem>.overlay.mp4` (or at the path `overlay`)."""
        table = Path(table)
        if overlay is True:
            overlay_path = table.with_suffix(".overlay.mp4")
        else:
            overlay_path = Path(overlay) if overlay else None
        return cls(table, table.with_suffix(".json"), overlay_path)

    def complete(self) -> bool:
        """True when a finished run's sidecar and every output it names exist."""
        if not (self.sidecar.is_file() and self.table.is_file()):
            return False
        if self.overlay is not None and not self.overlay.is_file():
            return False
        try:
            return json.loads(self.sidecar.read_text()).get("finished") is True
        except (OSError, ValueError):
            return False


class _CsvRows:
    """Appends row groups to a temporary CSV as they arrive; `finish()` renames it."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = temporary_name(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.tmp, "w", newline="")
        self._header = True

    def write(self, rows: pd.DataFrame) -> None:
        rows.to_csv(self._handle, header=self._header, index=False, float_format="%.6f",
                    quoting=csv.QUOTE_MINIMAL)
        self._header = False

    def finish(self) -> None:
        self._handle.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._handle.close()
        self.tmp.unlink(missing_ok=True)


class _CollectedRows:
    """Keeps row groups in memory (the DataFrame API, Parquet output)."""

    def __init__(self, path: Path | None = None, table_format: str = "parquet"):
        self.path = path
        self.table_format = table_format
        self.parts: list[pd.DataFrame] = []

    def write(self, rows: pd.DataFrame) -> None:
        self.parts.append(rows)

    def table(self) -> pd.DataFrame:
        return pd.concat(self.parts, ignore_index=True) if self.parts else pd.DataFrame()

    def finish(self) -> None:
        if self.path is not None:
            write_table(self.table(), self.path, self.table_format)

    def abort(self) -> None:
        self.parts.clear()


def _sidecar(path: Path, engine: InferenceEngine, reader: VideoReader, options: AnalyzeOptions,
             stats: RunStats, outputs: OutputPaths, fmt: str, started: float) -> dict:
    info = reader.info
    loaded = engine.loaded
    return {
        "tool": "fgnet-video",
        "version": __version__,
        "finished": True,
        "truncated": stats.truncated,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "input": {"path": str(path), "bytes": path.stat().st_size},
        "video": {"codec": info.codec, "width": info.width, "height": info.height,
                  "fps": info.fps, "duration": info.duration, "frames": info.frame_count,
                  "rotation": info.rotation},
        "checkpoint": {"path": loaded.metadata.get("path"),
                       "sha256": loaded.checkpoint_sha256(),
                       "sources": loaded.metadata.get("sources", {}),
                       "dataset": loaded.dataset, "aus": list(loaded.aus),
                       "features": list(engine.model.config.features)},
        "settings": {"sampling": asdict(options.sampling), "face": asdict(options.face),
                     "format": fmt, "device": str(engine.device),
                     "precision": str(engine.dtype).replace("torch.", ""),
                     "batch_size": engine.batch_size},
        "outputs": {"table": outputs.table.name,
                    "overlay": outputs.overlay.name if outputs.overlay else None},
        "stats": stats.as_dict(),
    }


def analyze_to_files(
    path: str | os.PathLike,
    engine: InferenceEngine,
    outputs: OutputPaths,
    options: AnalyzeOptions | None = None,
    on_progress: Callable[[int, int], None] = lambda frames, faces: None,
    on_rows: Callable[[pd.DataFrame], None] = lambda rows: None,
) -> RunStats:
    """Analyse `path` into `outputs` (each group of rows also goes to `on_rows`); on any
    failure no output file is left behind. The table's format is `options.table_format`,
    else chosen by its suffix (`fgnet_video.outputs.table_format`)."""
    from fgnet_video.overlay import OverlayWriter

    options = options or AnalyzeOptions()
    path = Path(path)
    started = time.time()
    sampling = options.sampling
    fmt = table_format(outputs.table, options.table_format)
    with VideoReader(path, fps=sampling.fps, start=sampling.start, end=sampling.end) as reader:
        rows = _CsvRows(outputs.table) if fmt == "csv" else _CollectedRows(outputs.table, fmt)
        overlay = None
        try:
            if outputs.overlay is not None:
                overlay = OverlayWriter(path, outputs.overlay, engine.loaded.aus)

            def on_scored(scored: list[ScoredFrame]) -> None:
                table = rows_for(scored, engine.loaded.aus)
                rows.write(table)
                on_rows(table)
                if overlay is not None:
                    for item in scored:
                        overlay.write(item)

            stats = analyze_stream(reader, engine, options.face, on_scored, on_progress)
            rows.finish()
            if overlay is not None:
                overlay.finish()
        except BaseException:
            rows.abort()
            if overlay is not None:
                overlay.abort()
            raise
    write_json(outputs.sidecar, _sidecar(path, engine, reader, options, stats, outputs, fmt,
                                         started))
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
    same defaults. With `output`, the table, its JSON sidecar and (with `overlay`: True or a
    path) the overlay video are written as well, exactly as the command writes them. Pass
    `engine` to reuse a loaded model across videos (the model options are then not used).
    A truncated stream is reported as a TruncatedVideoWarning.
    """
    from fgnet_video.video import TruncatedVideoWarning

    settings = AnalyzeOptions.from_kwargs(**options)
    if engine is None:
        engine = InferenceEngine.from_weights(**settings.model.engine_kwargs())
    rows = _CollectedRows()
    if output is not None:
        stats = analyze_to_files(path, engine, OutputPaths.for_table(output, overlay), settings,
                                 on_rows=rows.write)
    else:
        sampling = settings.sampling
        with VideoReader(path, fps=sampling.fps, start=sampling.start,
                         end=sampling.end) as reader:
            stats = analyze_stream(reader, engine, settings.face,
                                   lambda scored: rows.write(rows_for(scored, engine.loaded.aus)))
    if stats.truncated:
        warnings.warn(f"{path}: truncated video: {stats.truncated}", TruncatedVideoWarning,
                      stacklevel=2)
    return rows.table()
