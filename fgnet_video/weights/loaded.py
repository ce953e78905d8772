"""What loading any checkpoint gives (`LoadedModel`), and the steps every format shares:
building the model of a config and loading a state dict into a part of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from fgnet_video.atomic import file_sha256
from fgnet_video.errors import UserError
from fgnet_video.model.config import FGNetConfig
from fgnet_video.model.fgnet import FGNet


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


def build_model(config: FGNetConfig, features: str | None) -> FGNet:
    """An FGNet of `config`, reduced to the feature groups `features` names (all: None)."""
    if features is not None:
        config = config.with_features(features)
    return FGNet(config)


def load_part(module: torch.nn.Module, state: Mapping, what: str) -> None:
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
