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
from collections.abc import Iterator
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
               stats: RunStats, fmt: str, started: float, outputs: dict,
               detector: str) -> dict:
    """The run record of `path` scored by the scorer `describe()` gave `scorer` for, its
    faces found by `detector` (what `options.face.detector` ran as: hog or cnn)."""
    info = reader.info
    return {
        "tool": TOOL,
        "version": __version__,
        "finished": True,
        "truncated": stats.truncated,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "input": {"path": os.path.abspath(path), "bytes": path.stat().st_size},
        "video": {"codec": info.codec, "width": info.width, "height": info.height,
                  "fps": info.fps, "duration": info.duration, "frames": info.frame_count,
                  "rotation": info.rotation, **reader.frame_timing()},
        "checkpoint": {"path": scorer.checkpoint_path, "sha256": scorer.sha256,
                       "sources": scorer.sources, "dataset": scorer.dataset,
                       "aus": list(scorer.aus), "features": list(scorer.features)},
        "settings": {"sampling": asdict(options.sampling),
                     "face": {**asdict(options.face), "detector": detector},
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
    """The reason a failure record at `path` gives (one line); None when it is not one."""
    record = _load_json(path)
    if not isinstance(record, dict) or record.get("tool") != TOOL or "outputs" in record:
        return None
    return " ".join(str(record.get("reason", "failed")).split())


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
        """The outputs a run record lists, beside it; None when it is not a valid run record
        (`read_run_record`)."""
        record = read_run_record(sidecar)
        if record is None:
            return None
        listed = _listed(sidecar, record)
        return cls(listed["table"], sidecar, listed.get("overlay"), listed.get("tracks"))

    def finals(self) -> list[Path]:
        """Every output, in commit order: table, overlay, tracks, sidecar (which marks
        completion)."""
        return [p for p in (self.table, self.overlay, self.tracks, self.sidecar)
                if p is not None]

    def complete(self) -> bool:
        """True when a valid run record says the run finished and every output it lists is
        beside it with the recorded size and sha256 (so a table from another run, or a half
        committed one, is not taken for complete)."""
        record = read_run_record(self.sidecar)
        if record is None or record.get("finished") is not True:
            return False
        recorded = record["outputs"]
        wanted = {"table": self.table, "overlay": self.overlay, "tracks": self.tracks}
        return all(path is None or _matches(path, recorded.get(role))
                   or (role == "overlay" and _failed(path, recorded.get(role)))
                   for role, path in wanted.items())


MAX_RECORD_BYTES = 1 << 20  # a run record is a few KB; anything larger is not one
OUTPUT_ROLES = ("table", "overlay", "tracks")


def _plain_name(name: object) -> bool:
    """A file name beside the record: no folder part, no way out of the folder."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


def _valid_entry(entry: object) -> bool:
    if entry is None:
        return True
    if not isinstance(entry, dict) or not _plain_name(entry.get("name")):
        return False
    if isinstance(entry.get("failed"), str):
        return True
    size = entry.get("bytes")
    return (isinstance(size, int) and not isinstance(size, bool) and size >= 0
            and isinstance(entry.get("sha256"), str))


def _load_json(path: Path) -> Any:
    """The JSON value in the file at `path` (at most MAX_RECORD_BYTES); None when it cannot
    be read or parsed (deep nesting included)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            return None
        return json.loads(data)
    except (OSError, ValueError, RecursionError):
        return None


def read_run_record(path: Path) -> dict | None:
    """The run record at `path` when it is one: a JSON object of this tool whose "outputs"
    maps each role (table required; overlay, tracks) to null or an entry with a plain file
    name (never a path out of the record's folder) and its size and sha256, or the reason
    it failed. None for anything else (missing, unreadable, malformed, another tool's JSON):
    such a unit is incomplete, and is redone."""
    record = _load_json(path)
    if not isinstance(record, dict) or record.get("tool") != TOOL:
        return None
    outputs = record.get("outputs")
    if (not isinstance(outputs, dict) or outputs.get("table") is None
            or not all(_valid_entry(outputs.get(role)) for role in OUTPUT_ROLES)):
        return None
    return record


def _listed(path: Path, record: dict) -> dict[str, Path]:
    """role -> the output file the valid run record `record` at `path` lists beside it."""
    return {role: path.with_name(entry["name"]) for role, entry in record["outputs"].items()
            if role in OUTPUT_ROLES and entry is not None}


def _records_in(folder: Path) -> Iterator[tuple[Path, dict | None]]:
    """(path, its run record or None) of every `*.json` in `folder`, in name order."""
    try:
        candidates = sorted(folder.glob(f"*{SIDECAR_SUFFIX}"))
    except OSError:
        return
    for path in candidates:
        yield path, read_run_record(path)


def recorded_outputs(folder: Path) -> set[str]:
    """The realpaths of the outputs the valid run records in `folder` list (tables,
    overlays, saved tracks): files this tool wrote, never inputs of a study."""
    return {os.path.realpath(file) for path, record in _records_in(folder)
            if record is not None for file in _listed(path, record).values()}


def finished_files(folder: Path) -> dict[str, Path]:
    """Every file a run record or failure record in `folder` claims, as realpath -> the
    unit's run record: the record itself, the outputs it lists, the unit's failure record,
    and the recording it analysed. The output guard (`fgnet_video.analysis.guard`) keeps
    them from being written over by anything but their own unit."""
    claimed: dict[str, Path] = {}
    for path, record in _records_in(folder):  # by content: x.failed.json may be x.failed's
        if record is None:
            if path.name.endswith(FAILED_SUFFIX) and read_failure_reason(path) is not None:
                owner = path.with_name(path.name.removesuffix(FAILED_SUFFIX) + SIDECAR_SUFFIX)
                claimed.setdefault(os.path.realpath(path), owner)
            continue
        files = [path, path.with_suffix(FAILED_SUFFIX), *_listed(path, record).values()]
        source = record.get("input", {}).get("path") if isinstance(record.get("input"),
                                                                    dict) else None
        if isinstance(source, str) and source:
            files.append(Path(source))
        for file in files:
            claimed[os.path.realpath(file)] = path
    return claimed


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
