"""Whether a finished unit still answers the command that is run now: its run record must
show the same recording (path and size), the settings that make the table (sampling, face
settings, column layout, smoothing), the same feature groups and AU set, and the same
weights (a file: the same path and content, by sha256; a known name: its cached file). A
unit that differs is stale: it is redone, and the reason is said in one line. Device,
precision, batch size and --psp are not compared (the first three move scores by rounding
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
from fgnet_video.aus import DEFAULT_DATASET
from fgnet_video.model.config import FEATURE_GROUPS
from fgnet_video.options import AnalyzeOptions, FaceSettings, detector_for

# face settings that do not change the faces found (any number of detection processes)
NEUTRAL_FACE_SETTINGS = ("face_workers",)


def _as_json(value: object) -> object:
    """`value` as it reads back from a run record (tuples become lists, ...)."""
    return json.loads(json.dumps(value))


def _face(settings: dict | FaceSettings) -> object:
    """The face settings that make a table, comparable between a record and the options:
    the detector as it runs (`detector_for`: a record names what `auto` ran)."""
    values = asdict(settings) if isinstance(settings, FaceSettings) else dict(settings)
    for name in NEUTRAL_FACE_SETTINGS:
        values.pop(name, None)
    if isinstance(values.get("detector"), str):
        values["detector"] = detector_for(values["detector"])
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
    from fgnet_video.cache import cache_dir
    from fgnet_video.weights.store import KNOWN_WEIGHTS

    known = KNOWN_WEIGHTS.get(model.weights.strip().lower())
    cached = None if known is None else cache_dir() / known.filename
    if cached is None or not isinstance(recorded, str) or os.path.realpath(
            recorded) != os.path.realpath(cached):
        return f"weights {recorded} then, {model.weights} now"
    return None


def _features_now(options: AnalyzeOptions) -> list[str]:
    """The feature groups the model of `options` runs: --features, else those of a converted
    file's config, else all three (release files and known weights)."""
    if options.model.features is not None:
        return [f.strip() for f in options.model.features.split(",") if f.strip()]
    spec = Path(options.model.weights).expanduser()
    if spec.is_file():
        from fgnet_video.model.config import FGNetConfig
        from fgnet_video.weights.formats import is_safetensors
        from fgnet_video.weights.metadata import read_converted_metadata

        if is_safetensors(spec):
            config = FGNetConfig.from_dict(read_converted_metadata(spec)["config"])
            return list(config.features)
    return list(FEATURE_GROUPS)


def _dataset_now(options: AnalyzeOptions) -> str | None:
    """The AU set's name `options` ask for: --dataset, the default for a release model.pth,
    None for a converted file or known weights (they carry their own)."""
    if options.model.dataset is not None:
        return options.model.dataset.lower()
    spec = Path(options.model.weights).expanduser()
    if spec.is_file():
        from fgnet_video.weights.formats import is_safetensors

        return None if is_safetensors(spec) else DEFAULT_DATASET
    return None


def _input_differs(record: dict, source: Path) -> str | None:
    """Why the recording analysed then is not `source`, or None."""
    recorded = record.get("input")
    if not isinstance(recorded, dict):
        return "its run record names no input"
    path = recorded.get("path")
    if isinstance(path, str) and os.path.isabs(path) and os.path.realpath(
            path) != os.path.realpath(source):
        return f"the recording was {path}, now {source}"
    try:
        size = source.stat().st_size
    except OSError:
        return None  # a missing input is its own failure
    if recorded.get("bytes") != size:
        return f"the recording {source} has changed since ({recorded.get('bytes')} bytes then, " \
               f"{size} now)"
    return None


def stale_reason(outputs: OutputPaths, options: AnalyzeOptions,
                 source: Path | None = None) -> str | None:
    """Why the finished unit at `outputs` does not answer `options` (and, when given, the
    recording `source`), as one phrase, or None when it does (or has no valid record: it is
    then incomplete, not stale)."""
    record = read_run_record(outputs.sidecar)
    if record is None:
        return None
    settings = record.get("settings")
    checkpoint = record.get("checkpoint")
    if not isinstance(settings, dict) or not isinstance(checkpoint, dict):
        return "its run record has no settings"
    if source is not None and (reason := _input_differs(record, source)) is not None:
        return reason
    wanted = {"sampling": _as_json(asdict(options.sampling)), "columns": options.columns,
              "smooth": options.smooth}
    for key, value in wanted.items():
        if settings.get(key) != value:
            return f"{key} {settings.get(key)} then, {value} now"
    if not isinstance(settings.get("face"), dict):
        return "other face settings"
    if _face(settings["face"]) != _face(options.face):
        return "other face settings"
    features = _features_now(options)
    if checkpoint.get("features") != features:
        return f"features {checkpoint.get('features')} then, {features} now"
    dataset = _dataset_now(options)
    if dataset is not None and checkpoint.get("dataset") != dataset:
        return f"dataset {checkpoint.get('dataset')} then, {dataset} now"
    return _weights_differ(checkpoint, options)
