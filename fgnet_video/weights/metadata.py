"""The converted file's metadata (JSON under METADATA_KEY in the safetensors header: config,
dataset, AU set, sources, format version): opening a converted file with its metadata
checked, reading the metadata alone, and describing it for `weights info`."""

from __future__ import annotations

import json
import os

from safetensors import safe_open

from fgnet_video.aus import AU_SETS
from fgnet_video.errors import UserError
from fgnet_video.model.config import FULL, FGNetConfig
from fgnet_video.weights.formats import first_line

METADATA_KEY = "fgnet_video"


FORMAT_VERSION = 1


def open_converted(path: str | os.PathLike, with_tensors: bool) -> tuple[dict, dict]:
    """(tensors, checked metadata) of a converted file; tensors only when asked (they are
    large)."""
    try:
        # the metadata alone is read through numpy, so that it needs no torch
        with safe_open(str(path), framework="pt" if with_tensors else "numpy") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if with_tensors else {}
    except Exception as exc:  # noqa: BLE001 - the library raises several unrelated types
        raise UserError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
    if raw is None:
        raise UserError(f"{path}: a safetensors file without fgnet-video metadata")
    return tensors, _checked_metadata(path, raw)


# The metadata entries every converted file has: (key, JSON type, its name).
_METADATA_ENTRIES = (("config", dict, "an object"), ("dataset", str, "a string"),
                     ("aus", list, "a list"))


def _checked_metadata(path: str | os.PathLike, raw: str) -> dict:
    """A converted file's metadata, parsed and checked (a format this version reads, a valid
    config, a dataset name and its AU numbers), or one UserError line saying what is wrong."""
    def bad(what: str) -> UserError:
        return UserError(f"{path}: not a fgnet-video checkpoint: {what}")

    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise bad(f"its metadata is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(meta, dict):
        raise bad(f"its metadata is {raw[:40]!r}, not a JSON object")
    version = meta.get("format_version", 0)
    if not isinstance(version, int):
        raise bad(f"its format_version {version!r} is not a number")
    if version > FORMAT_VERSION:
        raise UserError(f"{path}: written by a newer fgnet-video (format {version})")
    for key, kind, name in _METADATA_ENTRIES:
        if key not in meta:
            raise bad(f"its metadata has no '{key}'")
        if not isinstance(meta[key], kind):
            raise bad(f"its metadata's '{key}' is not {name}")
    if not all(type(au) is int and au > 0 for au in meta["aus"]):
        raise bad("its metadata's 'aus' are not all AU numbers")
    problem = _config_value_problem(meta["config"])
    if problem:
        raise bad(f"its config is invalid ({problem})")
    try:
        config = FGNetConfig.from_dict(meta["config"])
    except UserError as exc:
        raise bad(f"its config is invalid ({exc})") from None
    if not 0 < len(meta["aus"]) <= config.n_heatmaps:
        raise bad(f"its metadata lists {len(meta['aus'])} AUs for {config.n_heatmaps} heatmaps")
    known = AU_SETS.get(meta["dataset"].lower())
    if known is not None and tuple(meta["aus"]) != known:
        raise bad(f"its metadata says {meta['dataset']} but lists AUs {meta['aus']}, not "
                  f"{meta['dataset']}'s {list(known)}")
    return meta


def _config_value_problem(config: dict) -> str | None:
    """The first config entry whose value is not of its field's kind (a positive integer or a
    list of them, a number in [0, 1], a list of names), None when all are; FGNetConfig checks
    that the sizes fit together."""
    for key, default in FULL.to_dict().items():
        if key not in config:
            continue  # from_dict takes the release's value
        value = config[key]
        if isinstance(default, tuple) != isinstance(value, list):
            return f"'{key}' is {value!r}"
        sample = default[0] if isinstance(default, tuple) else default
        for item in value if isinstance(value, list) else [value]:
            if isinstance(sample, str):
                fits = isinstance(item, str)
            elif isinstance(sample, float):
                fits = type(item) in (int, float) and 0 <= item <= 1
            else:
                fits = type(item) is int and item > 0
            if not fits:
                return f"'{key}' holds {item!r}"
    return None


def read_converted_metadata(path: str | os.PathLike) -> dict:
    """Only the JSON metadata of a converted file, checked as `_checked_metadata` says (cheap:
    tensors are not read)."""
    return open_converted(path, with_tensors=False)[1]


def describe(meta: dict) -> dict:
    """Human-oriented summary of converted-file metadata (for `weights info`)."""
    config = FGNetConfig.from_dict(meta["config"])
    return {
        "dataset": meta["dataset"],
        "aus": meta["aus"],
        "resolution": config.resolution,
        "image_size": config.image_size,
        "heatmaps": f"{config.n_heatmaps} x {config.heatmap_size}x{config.heatmap_size}",
        "features": ",".join(config.features),
        "styles": config.n_styles,
        "tool_version": meta.get("tool_version"),
        "sources": meta.get("sources", {}),
        "levels": config.n_levels,
    }
