"""Loading and saving FG-Net weights.

Accepted inputs (PyTorch files are read with `weights_only=True`; a file that needs
unpickling of code is refused):

- a converted file (safetensors + JSON metadata: config, dataset, AU set, sources);
- the release's `model.pth` ({'interpreter', 'g_all', 'pspencoder'}) plus the pSp
  `encoder.pt` for `latent_avg`, which `model.pth` does not carry;
- a pSp `encoder.pt` alone ({'state_dict': encoder.* + decoder.*, 'latent_avg', 'opts'}),
  optionally with a StyleGAN2 `.pt` whose `g_ema` replaces the decoder: the starting point
  for training, with a freshly initialised interpreter.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fgnet_video.atomic import atomic_path, file_sha256
from fgnet_video.aus import DEFAULT_DATASET, au_set
from fgnet_video.errors import UserError
from fgnet_video.model.config import FULL, FGNetConfig
from fgnet_video.model.fgnet import FGNet
from fgnet_video.version import __version__

METADATA_KEY = "fgnet_video"
FORMAT_VERSION = 1
RELEASE_PARTS = ("interpreter", "g_all", "pspencoder")


@dataclass
class LoadedModel:
    """A model ready for inference or training, with the AU set its channels encode."""

    model: FGNet
    dataset: str
    aus: tuple[int, ...]
    metadata: dict = field(default_factory=dict)

    def checkpoint_sha256(self) -> str | None:
        """sha256 of the file the model was loaded from (computed once)."""
        if "sha256" not in self.metadata and self.metadata.get("path"):
            self.metadata["sha256"] = file_sha256(self.metadata["path"])
        return self.metadata.get("sha256")


# -- reading ---------------------------------------------------------------------------

def _is_safetensors(path: Path) -> bool:
    """safetensors files start with a little-endian u64 header length, then a JSON '{'."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


# What a file that is no checkpoint may be, by its first bytes: (magic, offset, what).
_SIGNATURES = (
    (b"ftyp", 4, "an MP4/MOV video"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"RIFF", 0, "a RIFF file (AVI video, WAV audio)"),
    (b"\x89PNG", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
)


def _sniff(head: bytes) -> str:
    """A guess at what a file that is neither a zip archive nor a pickle holds, from its
    first bytes."""
    for magic, offset, what in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "text"
    return "unrecognised bytes (random data?)"


def torch_load(path: str | os.PathLike) -> Mapping:
    """torch.load with weights_only=True, turning every failure into one clear line: a file
    that is neither a zip archive (torch.save's format) nor a pickle (its legacy format) is
    not a PyTorch checkpoint; a pickle that names a class or function outside torch's
    allow-list is refused as pickled code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        raise UserError(f"{path}: empty file (0 bytes), not a PyTorch checkpoint")
    is_zip = head.startswith(b"PK\x03\x04")
    if not is_zip and head[:1] != b"\x80":  # a pickle (protocol 2+) opens with PROTO
        raise UserError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a "
                        f"pickle: {_sniff(head)})")
    try:
        with warnings.catch_warnings():  # its advice on pickle protocols is not the user's
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        code = re.search(r"GLOBAL (\S+)", str(exc))
        if code:
            raise UserError(
                f"{path}: refused: the file contains pickled code ({code.group(1)}), not plain"
                " tensors (checkpoints are loaded with weights_only=True)"
            ) from None
        raise UserError(f"{path}: not a PyTorch checkpoint (unpickling failed: "
                        f"{_unpickler_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - torch.load fails with many types on garbage
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: expected a dict of state dicts, found {type(data).__name__}")
    return data


def _unpickler_reason(exc: BaseException) -> str:
    """The reason torch's weights-only unpickler gave ('Unsupported operand 59'), without
    the advice around it."""
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
    return found.group(1)[:200] if found else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _open_converted(path: str | os.PathLike, with_tensors: bool) -> tuple[dict, dict]:
    """(tensors, checked metadata) of a converted file; tensors only when asked (they are
    large)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if with_tensors else {}
    except Exception as exc:  # noqa: BLE001 - the library raises several unrelated types
        raise UserError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
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
    return _open_converted(path, with_tensors=False)[1]


def _load_part(module: torch.nn.Module, state: Mapping, what: str) -> None:
    """Strict load of one part with a one-line description of any mismatch."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise UserError(f"{what}: keys do not match FG-Net's: {', '.join(detail)}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(
                f"{what}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    module.load_state_dict(dict(state), strict=True)


def _strip(state: Mapping, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _generator_sizes(g_state: Mapping) -> dict:
    """Generator sizes read off a StyleGAN2 state dict (resolution, widths, mapping depth)."""
    if "conv1.conv.weight" not in g_state or "style.1.weight" not in g_state:
        raise UserError("not a StyleGAN2 generator state dict (no conv1.conv.weight)")
    n_convs = sum(1 for k in g_state if k.startswith("convs.") and k.endswith(".conv.weight"))
    channels = [g_state["conv1.conv.weight"].shape[1]]
    channels += [g_state[f"convs.{2 * k + 1}.conv.weight"].shape[1] for k in range(n_convs // 2)]
    return {
        "style_dim": int(g_state["style.1.weight"].shape[0]),
        "n_mlp": sum(1 for k in g_state if k.startswith("style.") and k.endswith(".weight")),
        "resolution": 2 ** (len(channels) + 1),
        "generator_channels": tuple(int(c) for c in channels),
    }


def _encoder_sizes(e_state: Mapping) -> dict:
    """IR-SE widths and blocks per stage (stages have distinct widths), and the input side
    (the coarse style blocks halve image_size / 16 down to 1)."""
    depths = []
    block = 0
    while f"body.{block}.res_layer.1.weight" in e_state:
        depths.append(int(e_state[f"body.{block}.res_layer.1.weight"].shape[0]))
        block += 1
    widths = tuple(dict.fromkeys(depths))
    n_coarse_convs = sum(
        1 for k in e_state if k.startswith("styles.0.convs.") and k.endswith("weight"))
    if len(widths) != 4 or n_coarse_convs == 0:
        raise UserError("not a pSp GradualStyleEncoder state dict (expected four IR-SE stages)")
    return {
        "encoder_widths": widths,
        "encoder_units": tuple(depths.count(w) for w in widths),
        "image_size": 16 * 2**n_coarse_convs,
    }


def _interpreter_sizes(i_state: Mapping) -> dict:
    """Head width, heatmap count and side (each x2 upsampling block puts its conv at index 1)."""
    layers = sorted({int(k.split(".")[0][5:]) for k in i_state if k.startswith("layer")})
    last = layers[-1]
    upsampling = sum(1 for i in layers if f"layer{i}.1.weight" in i_state and
                     i_state[f"layer{i}.1.weight"].ndim == 4)
    return {
        "head_width": int(i_state[f"layer{last}.0.weight"].shape[0]),
        "n_heatmaps": int(i_state[f"layer{last}.4.weight"].shape[0]),
        "heatmap_size": 4 * 2**upsampling,
    }


def infer_config(g_state: Mapping, e_state: Mapping, i_state: Mapping | None = None) -> FGNetConfig:
    """The FGNetConfig whose modules have exactly these state dicts' shapes. Without an
    interpreter, its sizes are the release's (heatmaps at 128 or the generator's side)."""
    sizes = {**_generator_sizes(g_state), **_encoder_sizes(e_state)}
    if i_state is not None:
        sizes.update(_interpreter_sizes(i_state))
    else:
        sizes["heatmap_size"] = min(FULL.heatmap_size, sizes["resolution"])
    return replace(FULL, **sizes)


def _release_au_set(dataset: str | None, n_heatmaps: int) -> tuple[str, tuple[int, ...]]:
    """(dataset name, AU set) a release checkpoint is read with: its heatmaps carry no AU
    names, so `--dataset` (default DEFAULT_DATASET) says which set they are, in order."""
    name = (dataset or DEFAULT_DATASET).lower()
    aus = au_set(name)
    if len(aus) > n_heatmaps:
        raise UserError(f"the model has {n_heatmaps} heatmaps, fewer than {name}'s {len(aus)} AUs")
    return name, aus


def _load_release(path: Path, data: Mapping, psp: str | None, dataset: str | None,
                  features: str | None) -> LoadedModel:
    if psp is None:
        raise UserError(
            f"{path}: a release model.pth does not carry latent_avg; pass the pSp encoder.pt"
            " with --psp"
        )
    psp_data = torch_load(psp)
    if "latent_avg" not in psp_data:
        raise UserError(f"{psp}: no latent_avg: not a pSp encoder checkpoint")
    config = infer_config(data["g_all"], data["pspencoder"], data["interpreter"])
    model = _build(config, features)
    for part in RELEASE_PARTS:
        _load_part(getattr(model, part), data[part], f"{path} [{part}]")
    _copy_latent_avg(model, psp_data["latent_avg"], psp)
    name, aus = _release_au_set(dataset, config.n_heatmaps)
    sources = {"model": {"file": path.name, "sha256": file_sha256(path)},
               "psp": {"file": Path(psp).name, "sha256": file_sha256(psp)}}
    return LoadedModel(model.eval(), name, aus, {"sources": sources, "kind": "release"})


def _copy_latent_avg(model: FGNet, latent_avg: torch.Tensor, where: str | os.PathLike) -> None:
    latent_avg = latent_avg.reshape(-1, latent_avg.shape[-1])[0]
    if latent_avg.shape != model.latent_avg.shape:
        raise UserError(f"{where}: latent_avg has {latent_avg.numel()} values, expected "
                        f"{model.latent_avg.numel()}")
    model.latent_avg.copy_(latent_avg)


def _load_psp(path: Path, data: Mapping, stylegan: str | None, dataset: str | None,
              features: str | None) -> LoadedModel:
    state = data["state_dict"]
    encoder, decoder = _strip(state, "encoder."), _strip(state, "decoder.")
    if not encoder or not decoder or "latent_avg" not in data:
        raise UserError(f"{path}: a pSp checkpoint needs encoder.*, decoder.* and latent_avg")
    sources = {"psp": {"file": path.name, "sha256": file_sha256(path)}}
    if stylegan is not None:
        g_data = torch_load(stylegan)
        if "g_ema" not in g_data:
            raise UserError(f"{stylegan}: no g_ema: not a StyleGAN2 checkpoint")
        decoder = g_data["g_ema"]
        sources["stylegan"] = {"file": Path(stylegan).name, "sha256": file_sha256(stylegan)}
    config = infer_config(decoder, encoder)
    model = _build(config, features)
    _load_part(model.pspencoder, encoder, f"{path} [encoder]")
    _load_part(model.g_all, decoder, f"{stylegan or path} [generator]")
    _copy_latent_avg(model, data["latent_avg"], path)
    name, aus = _release_au_set(dataset, config.n_heatmaps)
    return LoadedModel(model.eval(), name, aus, {"sources": sources, "kind": "psp-init"})


def _load_converted(path: Path, dataset: str | None, features: str | None) -> LoadedModel:
    tensors, meta = _open_converted(path, with_tensors=True)
    config = FGNetConfig.from_dict(meta["config"])
    model = _build(config, features)
    _load_part(model, tensors, str(path))
    name, aus = meta["dataset"], tuple(meta["aus"])
    if dataset is not None and dataset.lower() != name:
        raise UserError(f"{path}: the checkpoint is for {name}, not {dataset}")
    return LoadedModel(model.eval(), name, aus, meta)


def _build(config: FGNetConfig, features: str | None) -> FGNet:
    if features is not None:
        config = config.with_features(features)
    return FGNet(config)


def load_model(
    path: str | os.PathLike,
    psp: str | os.PathLike | None = None,
    stylegan: str | os.PathLike | None = None,
    dataset: str | None = None,
    features: str | None = None,
) -> LoadedModel:
    """Load any accepted checkpoint (see module docstring) as an FG-Net in eval mode.

    `dataset` names the AU set of release and pSp files (default bp4d); a converted file
    carries its own. `features` ('early,middle', ...) overrides the feature groups.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    if _is_safetensors(path):
        loaded = _load_converted(path, dataset, features)
    else:
        data = torch_load(path)
        if all(part in data for part in RELEASE_PARTS):
            loaded = _load_release(path, data, None if psp is None else str(psp), dataset,
                                   features)
        elif "state_dict" in data and isinstance(data["state_dict"], Mapping):
            loaded = _load_psp(path, data, None if stylegan is None else str(stylegan), dataset,
                               features)
        else:
            keys = ", ".join(sorted(map(str, data))[:6]) or "none"
            raise UserError(
                f"{path}: not an FG-Net, pSp or converted checkpoint (top-level keys: {keys})")
    loaded.metadata["path"] = str(path)
    return loaded


# -- writing ---------------------------------------------------------------------------

def save_converted(
    path: str | os.PathLike,
    model: FGNet,
    dataset: str,
    aus: tuple[int, ...],
    sources: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the whole model as one safetensors file with JSON metadata, atomically."""
    path = Path(path)
    if len(aus) > model.config.n_heatmaps:
        raise UserError(f"{len(aus)} AUs do not fit in {model.config.n_heatmaps} heatmaps")
    meta = {
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "config": model.config.to_dict(),
        "dataset": dataset.lower(),
        "aus": [int(a) for a in aus],
        "sources": sources or {},
        **(extra or {}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    return path


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
