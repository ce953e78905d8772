"""The model a training run starts from, and the parameters it trains."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fgnet_video.errors import UserError
from fgnet_video.model.config import FGNetConfig, preset
from fgnet_video.model.fgnet import FGNet
from fgnet_video.model.init import random_model
from fgnet_video.train.options import TrainOptions
from fgnet_video.weights.checkpoints import load_model
from fgnet_video.weights.store import load_weights


def initial_model(options: TrainOptions, aus: tuple[int, ...]) -> tuple[FGNet, dict]:
    """(model, sources) from the run's initialisation; call after seeding torch.

    - weights: an FG-Net checkpoint (fine-tuning), a file or a known name fetched into the
      cache unless `offline` (fgnet_video.weights.store.load_weights; a release model.pth gets
      load_model's default AU set); output channels are reordered so each AU the checkpoint
      already predicts keeps its channel's weights;
    - psp (+ stylegan): pSp encoder and generator weights, a fresh interpreter;
    - preset: random weights of a named size (fgnet_video.model.init.random_model).
    """
    if options.weights:
        loaded = load_weights(options.weights, psp=options.psp, features=options.features,
                              offline=options.offline)
        model = loaded.model
        remap_output_channels(model, loaded.aus, aus)
        sources = {"init": "weights", **loaded.metadata.get("sources", {})}
    elif options.psp:
        loaded = load_model(options.psp, stylegan=options.stylegan, features=options.features)
        model, sources = loaded.model, {"init": "psp", **loaded.metadata.get("sources", {})}
    else:
        config = preset(options.preset or "")
        if options.features:
            config = config.with_features(options.features)
        model = random_model(config, seed=options.seed)
        sources = {"init": f"preset:{options.preset}"}
    if len(aus) > model.config.n_heatmaps:
        n = model.config.n_heatmaps
        raise UserError(f"{len(aus)} AUs do not fit in the model's {n} heatmaps")
    set_dropout(model, options.dropout)
    return model, sources


def output_conv(model: FGNet) -> nn.Conv2d:
    """The interpreter's last convolution (one output channel per heatmap)."""
    convs = [m for m in model.interpreter.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1]


def remap_output_channels(model: FGNet, old_aus: Sequence[int], new_aus: Sequence[int]) -> None:
    """Permute the heatmap channels so that channel k serves new_aus[k], taking the old channel
    of the same AU where there is one and the unused channels, in order, elsewhere."""
    conv = output_conv(model)
    n = conv.out_channels
    taken = [list(old_aus).index(au) for au in new_aus if au in old_aus]
    spare = iter(c for c in range(n) if c not in taken)
    order = [list(old_aus).index(au) if au in old_aus else next(spare) for au in new_aus]
    order += list(spare)
    if order == list(range(n)):
        return
    index = torch.tensor(order, device=conv.weight.device)
    with torch.no_grad():
        conv.weight.copy_(conv.weight[index])
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[index])


def set_dropout(model: nn.Module, p: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def unreached_parameters(config: FGNetConfig, rgb: bool = False) -> set[str]:
    """Names of the parameters FG-Net's forward pass never reaches (the generator's RGB
    branch, styles of levels that are not computed), found by a forward/backward of an
    FG-Net of this config on the meta device (no memory, no arithmetic). With `rgb`, the
    generator's RGB image counts as an output too (its branch is then reached)."""
    with torch.device("meta"):
        probe = FGNet(config).eval()
        size = config.image_size
        images = torch.zeros(1, 3, size, size)
        loss = probe(images).float().sum()
        if rgb:
            loss = loss + probe.reconstruct(images).float().sum()
        loss.backward()
    return {name for name, param in probe.named_parameters() if param.grad is None}


def freeze_unreached(model: FGNet, rgb: bool = False) -> list[nn.Parameter]:
    """Freeze the parameters the forward pass (and, with `rgb`, the RGB reconstruction)
    never reaches and return the trainable ones (DDP needs a gradient for every parameter
    it synchronises)."""
    unreached = unreached_parameters(model.config, rgb)
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name not in unreached)
        if name not in unreached:
            trainable.append(param)
    return trainable
