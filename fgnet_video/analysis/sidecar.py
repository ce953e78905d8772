"""The run record (the sidecar `<stem>.json` beside a table) and the failure record
(`<stem>.failed.json`): their fields, writing and reading, in one place (their suffixes,
which help texts quote too, are in `fgnet_video.options`).

The run record marks a unit of outputs complete: it is committed last (`fgnet_video.analysis
.commit`) and holds, besides what produced the outputs (input, video, checkpoint, settings,
stats), each output's name, size and sha256, so a table from another run or a half-committed
unit is never taken for complete. Its fields:

    tool "fgnet-video", version, finished (true), truncated (reason or null), started_at,
    input {path, bytes}, video {codec, width, height, fps, duration, frames, rotation,
    fps_measured, frame_interval_min, frame_interval_max, variable_frame_rate},
    checkpoint {path, sha256, sources, dataset, aus, features},
    settings {sampling, face, format, columns, smooth, device, precision, batch_size},
    outputs {table, overlay, tracks: {name, bytes, sha256} or {name, failed} or null},
    stats (`fgnet_video.analysis.stream.RunStats.as_dict`)

The failure record says why the last run of an input in a study failed: tool, input,
reason (one line), failed_at. `fgnet-video status` reads both.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fgnet_video.atomic import file_sha256, write_json
from fgnet_video.options import FAILED_SUFFIX, OVERLAY_SUFFIX, SIDECAR_SUFFIX, TRACKS_SUFFIX
from fgnet_video.version import __version__

if TYPE_CHECKING:
    from fgnet_video.analysis.stream import RunStats
    from fgnet_video.inference.engine import EngineFacts
    from fgnet_video.media.video import VideoReader
    from fgnet_video.options import AnalyzeOptions

TOOL = "fgnet-video"


def run_record(path: Path, scorer: EngineFacts, reader: VideoReader, options: AnalyzeOptions,
               stats: RunStats, fmt: str, started: float, outputs: dict) -> dict:
    """The run record of `path` scored by the scorer `describe()` gave `scorer` for."""
    info = reader.info
    return {
        "tool": TOOL,
        "version": __version__,
        "finished": True,
        "truncated": stats.truncated,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "input": {"path": str(path), "bytes": path.stat().st_size},
        "video": {"codec": info.codec, "width": info.width, "height": info.height,
                  "fps": info.fps, "duration": info.duration, "frames": info.frame_count,
                  "rotation": info.rotation, **reader.frame_timing()},
        "checkpoint": {"path": scorer.checkpoint_path, "sha256": scorer.sha256,
                       "sources": scorer.sources, "dataset": scorer.dataset,
                       "aus": list(scorer.aus), "features": list(scorer.features)},
        "settings": {"sampling": asdict(options.sampling), "face": asdict(options.face),
                     "format": fmt, "columns": options.columns, "smooth": options.smooth,
                     "device": scorer.device,
                     "precision": str(scorer.dtype).removeprefix("torch."),
                     "batch_size": scorer.batch_size},
        "outputs": outputs,
        "stats": stats.as_dict(),
    }


def write_failure_record(path: Path, source: Path, reason: str) -> None:
    """Record at `path` why the analysis of `source` failed."""
    write_json(path, {"tool": TOOL, "input": str(source), "reason": reason,
                      "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def read_failure_reason(path: Path) -> str | None:
    """The reason a failure record at `path` gives; None when there is none to read."""
    try:
        record: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    return str(record.get("reason", "failed"))


@dataclass(frozen=True)
class OutputPaths:
    """Where one input's results go. They are committed as one unit (`fgnet_video.commit`),
    the sidecar last; the sidecar records each output's size and sha256."""

    table: Path
    sidecar: Path
    overlay: Path | None = None
    tracks: Path | None = None

    @classmethod
    def for_table(cls, table: str | os.PathLike, overlay: bool | str | os.PathLike = False,
                  tracks: bool = False) -> OutputPaths:
        """The outputs of a table at `table`: the sidecar beside it (`<stem>.json`), with
        `overlay` True the overlay `<stem>.overlay.mp4` (or at the path `overlay`), with
        `tracks` the saved face tracks `<stem>.tracks.npz`."""
        table = Path(table)
        if overlay is True:
            overlay_path = table.with_suffix(OVERLAY_SUFFIX)
        else:
            overlay_path = Path(overlay) if overlay else None
        return cls(table, table.with_suffix(SIDECAR_SUFFIX), overlay_path,
                   table.with_suffix(TRACKS_SUFFIX) if tracks else None)

    @property
    def failure_record(self) -> Path:
        """`<stem>.failed.json`: why the last run of this input failed (batch runs)."""
        return self.sidecar.with_suffix(FAILED_SUFFIX)

    @classmethod
    def from_sidecar(cls, sidecar: Path) -> OutputPaths | None:
        """The outputs a sidecar records, beside it; None when it is not a readable
        fgnet-video sidecar."""
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return None
        recorded = meta.get("outputs") if isinstance(meta, dict) else None
        if meta.get("tool") != TOOL or not isinstance(recorded, dict):
            return None

        def beside(role: str) -> Path | None:
            entry = recorded.get(role)
            return sidecar.with_name(entry["name"]) if isinstance(entry, dict) else None

        table = beside("table")
        return None if table is None else cls(table, sidecar, beside("overlay"),
                                              beside("tracks"))

    def finals(self) -> list[Path]:
        """Every output, in commit order: table, overlay, tracks, sidecar (which marks
        completion)."""
        return [p for p in (self.table, self.overlay, self.tracks, self.sidecar)
                if p is not None]

    def complete(self) -> bool:
        """True when the sidecar says the run finished and every output it records is beside
        it with the recorded size and sha256 (so a table from another run, or a half
        committed one, is not taken for complete)."""
        try:
            meta = json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(meta, dict) or meta.get("finished") is not True:
            return False
        recorded = meta.get("outputs") or {}
        wanted = {"table": self.table, "overlay": self.overlay, "tracks": self.tracks}
        return all(path is None or _matches(path, recorded.get(role))
                   or (role == "overlay" and _failed(path, recorded.get(role)))
                   for role, path in wanted.items())


def output_record(path: Path, final: Path) -> dict:
    """What the sidecar records of an output written at `path` that will be at `final`."""
    return {"name": final.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def failed_record(final: Path, reason: str) -> dict:
    """What the sidecar records of an output that failed on its own (the overlay): the run is
    complete without it, and is not retried (`--overwrite` tries again)."""
    return {"name": final.name, "failed": reason}


def _failed(path: Path, record: object) -> bool:
    return (isinstance(record, dict) and record.get("name") == path.name
            and isinstance(record.get("failed"), str))


def _matches(path: Path, record: object) -> bool:
    """Whether the file at `path` is the one `record` (from `_record`) describes."""
    if not isinstance(record, dict) or record.get("name") != path.name or not path.is_file():
        return False
    return (path.stat().st_size == record.get("bytes")
            and file_sha256(path) == record.get("sha256"))
