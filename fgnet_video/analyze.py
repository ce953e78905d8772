"""Analyse one recording into files (AU table, JSON sidecar, optional overlay) or a DataFrame.

Files appear only when complete: the table and overlay are written under temporary names
and renamed at the end, and the sidecar, written last, is what marks an input as done.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from fgnet_video import __version__
from fgnet_video.atomic import temporary_name, write_json
from fgnet_video.errors import UserError
from fgnet_video.face.pipeline import FaceSettings
from fgnet_video.inference import InferenceEngine
from fgnet_video.outputs import OUTPUT_FORMATS, write_table
from fgnet_video.pipeline import RunStats, SamplingSettings, ScoredFrame, analyze_stream, rows_for
from fgnet_video.video import VideoReader


@dataclass(frozen=True)
class AnalyzeOptions:
    """Everything about an analysis except the model and the paths."""

    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    face: FaceSettings = field(default_factory=FaceSettings)
    table_format: str = "csv"

    def __post_init__(self) -> None:
        if self.table_format not in OUTPUT_FORMATS:
            raise UserError(f"unknown format {self.table_format!r} (use csv or parquet)")


@dataclass(frozen=True)
class OutputPaths:
    """Where one input's results go; `sidecar` exists only once the others are complete."""

    table: Path
    sidecar: Path
    overlay: Path | None = None

    @classmethod
    def beside(cls, table: str | os.PathLike, overlay: str | os.PathLike | None = None):
        table = Path(table)
        return cls(table, table.with_suffix(".json"), None if overlay is None else Path(overlay))

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
             stats: RunStats, outputs: OutputPaths, started: float) -> dict:
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
                     "format": options.table_format, "device": str(engine.device),
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
) -> RunStats:
    """Analyse `path` into `outputs`; on any failure no output file is left behind."""
    from fgnet_video.overlay import OverlayWriter

    options = options or AnalyzeOptions()
    path = Path(path)
    started = time.time()
    sampling = options.sampling
    reader = VideoReader(path, fps=sampling.fps, start=sampling.start, end=sampling.end)
    if options.table_format == "csv":
        rows = _CsvRows(outputs.table)
    else:
        rows = _CollectedRows(outputs.table, options.table_format)
    overlay = None
    try:
        if outputs.overlay is not None:
            overlay = OverlayWriter(path, outputs.overlay, engine.loaded.aus)

        def on_scored(scored: list[ScoredFrame]) -> None:
            rows.write(rows_for(scored, engine.loaded.aus))
            if overlay is not None:
                for item in scored:
                    overlay.write(item)

        stats = analyze_stream(path, engine, options.face, sampling, on_scored, on_progress,
                               reader=reader)
        rows.finish()
        if overlay is not None:
            overlay.finish()
    except BaseException:
        rows.abort()
        if overlay is not None:
            overlay.abort()
        reader.close()
        raise
    write_json(outputs.sidecar, _sidecar(path, engine, reader, options, stats, outputs, started))
    return stats


def analyze_video(
    path: str | os.PathLike,
    weights: str = "bp4d",
    psp: str | None = None,
    dataset: str | None = None,
    features: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 16,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_faces: int | None = None,
    face_settings: FaceSettings | None = None,
    engine: InferenceEngine | None = None,
) -> pd.DataFrame:
    """Per-frame, per-face AU table of one video (the columns of `analyze`'s CSV).

    `weights` is a converted file, a release model.pth (with `psp`) or a known name
    ('bp4d', 'disfa'); pass `engine` to reuse a loaded model across videos.
    """
    if engine is None:
        engine = InferenceEngine.from_weights(weights, psp=psp, dataset=dataset,
                                              features=features, device=device,
                                              precision=precision, batch_size=batch_size)
    if face_settings is None:
        face_settings = FaceSettings(max_faces=max_faces)
    rows = _CollectedRows()
    analyze_stream(path, engine, face_settings, SamplingSettings(fps, start, end),
                   lambda scored: rows.write(rows_for(scored, engine.loaded.aus)))
    return rows.table()
