"""Loading and saving FG-Net weights: `load_model` takes any accepted file (the format is
sniffed, `formats.py`), `save_converted` writes the converted format.

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
from collections.abc import Mapping
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import save_file

from fgnet_video.atomic import atomic_path
from fgnet_video.errors import UserError
from fgnet_video.model.config import FGNetConfig
from fgnet_video.model.fgnet import FGNet
from fgnet_video.version import __version__
from fgnet_video.weights.formats import first_line, is_safetensors, torch_load
from fgnet_video.weights.loaded import LoadedModel, build_model, load_part
from fgnet_video.weights.metadata import FORMAT_VERSION, METADATA_KEY, open_converted
from fgnet_video.weights.release import RELEASE_PARTS, load_psp, load_release

# -- reading ---------------------------------------------------------------------------


def _load_converted(path: Path, dataset: str | None, features: str | None) -> LoadedModel:
    tensors, meta = open_converted(path, with_tensors=True)
    config = FGNetConfig.from_dict(meta["config"])
    model = build_model(config, features)
    load_part(model, tensors, str(path))
    name, aus = meta["dataset"], tuple(meta["aus"])
    if dataset is not None and dataset.lower() != name:
        raise UserError(f"{path}: the checkpoint is for {name}, not {dataset}")
    return LoadedModel(model.eval(), name, aus, meta)


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
    if is_safetensors(path):
        loaded = _load_converted(path, dataset, features)
    else:
        data = torch_load(path)
        if all(part in data for part in RELEASE_PARTS):
            loaded = load_release(path, data, None if psp is None else str(psp), dataset,
                                   features)
        elif "state_dict" in data and isinstance(data["state_dict"], Mapping):
            loaded = load_psp(path, data, None if stylegan is None else str(stylegan), dataset,
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
        try:
            save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
        except SafetensorError as exc:  # e.g. a full disk, which safetensors reports so
            raise UserError(f"{path}: could not be written ({first_line(exc)})") from None
    return path


