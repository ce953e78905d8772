"""The release's checkpoints into FGNet: `model.pth` ({'interpreter', 'g_all', 'pspencoder'})
with the pSp `encoder.pt` for `latent_avg`, or a pSp `encoder.pt` alone (optionally with a
StyleGAN2 `.pt` whose `g_ema` replaces the decoder); the model's config inferred from the
state dicts' shapes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from fgnet_video.atomic import file_sha256
from fgnet_video.aus import DEFAULT_DATASET, au_set
from fgnet_video.errors import UserError
from fgnet_video.model.config import FULL, FGNetConfig
from fgnet_video.model.fgnet import FGNet
from fgnet_video.weights.formats import torch_load
from fgnet_video.weights.loaded import LoadedModel, build_model, load_part

RELEASE_PARTS = ("interpreter", "g_all", "pspencoder")


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


def load_release(path: Path, data: Mapping, psp: str | None, dataset: str | None,
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
    model = build_model(config, features)
    for part in RELEASE_PARTS:
        load_part(getattr(model, part), data[part], f"{path} [{part}]")
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


def load_psp(path: Path, data: Mapping, stylegan: str | None, dataset: str | None,
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
    model = build_model(config, features)
    load_part(model.pspencoder, encoder, f"{path} [encoder]")
    load_part(model.g_all, decoder, f"{stylegan or path} [generator]")
    _copy_latent_avg(model, data["latent_avg"], path)
    name, aus = _release_au_set(dataset, config.n_heatmaps)
    return LoadedModel(model.eval(), name, aus, {"sources": sources, "kind": "psp-init"})
