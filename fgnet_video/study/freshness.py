"""Whether a finished unit still answers the command that is run now: its run record must
show the settings that make the table (sampling, face settings, column layout, smoothing)
and the same weights (a file: the same path and content, by sha256; a known name: its
cached file). A unit that differs is stale: it is redone, and the reason is said in one
line. Device, precision and batch size are not compared (they move scores by rounding
only).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict
from pathlib import Path

from fgnet_video.analysis.sidecar import OutputPaths, read_run_record
from fgnet_video.atomic import file_sha256
from fgnet_video.options import AnalyzeOptions, FaceSettings

# face settings that do not change the faces found (any number of detection processes)
NEUTRAL_FACE_SETTINGS = ("face_workers",)


def _as_json(value: object) -> object:
    """`value` as it reads back from a run record (tuples become lists, ...)."""
    return json.loads(json.dumps(value))


def _face(settings: dict | FaceSettings) -> object:
    values = asdict(settings) if isinstance(settings, FaceSettings) else dict(settings)
    for name in NEUTRAL_FACE_SETTINGS:
        values.pop(name, None)
    return _as_json(values)


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _weights_differ(checkpoint: dict, options: AnalyzeOptions) -> str | None:
    """Why the recorded checkpoint is not the one `options` name, or None."""
    model = options.model
    recorded = checkpoint.get("path")
    spec = Path(model.weights).expanduser()
    if spec.is_file():
        if not isinstance(recorded, str) or os.path.realpath(recorded) != os.path.realpath(
                spec):
            return f"weights {recorded} then, {spec} now"
        info = spec.stat()
        if _sha256(str(spec), info.st_size, info.st_mtime_ns) != checkpoint.get("sha256"):
            return f"the weights file {spec} has changed since"
        return None
    name = model.weights.strip().lower()
    if not isinstance(recorded, str) or Path(recorded).stem.lower() != name:
        return f"weights {recorded} then, {name} now"
    return None


def stale_reason(outputs: OutputPaths, options: AnalyzeOptions) -> str | None:
    """Why the finished unit at `outputs` does not answer `options` (one phrase), or None
    when it does (or has no valid record: it is then incomplete, not stale)."""
    record = read_run_record(outputs.sidecar)
    if record is None:
        return None
    settings = record.get("settings")
    checkpoint = record.get("checkpoint")
    if not isinstance(settings, dict) or not isinstance(checkpoint, dict):
        return "its run record has no settings"
    wanted = {"sampling": _as_json(asdict(options.sampling)), "columns": options.columns,
              "smooth": options.smooth}
    for key, value in wanted.items():
        if settings.get(key) != value:
            return f"{key} {settings.get(key)} then, {value} now"
    if not isinstance(settings.get("face"), dict) or _face(settings["face"]) != _face(
            options.face):
        return "other face settings"
    if options.model.features is not None:
        features = [f.strip() for f in options.model.features.split(",") if f.strip()]
        if checkpoint.get("features") != features:
            return f"features {checkpoint.get('features')} then, {features} now"
    if options.model.dataset is not None and checkpoint.get("dataset") != (
            options.model.dataset.lower()):
        return f"dataset {checkpoint.get('dataset')} then, {options.model.dataset} now"
    return _weights_differ(checkpoint, options)
