"""FG-Net: aligned face -> pSp W+ codes -> StyleGAN2 features -> Pyramid Interpreter heatmaps.

The release's forward pass, reproduced exactly:

    codes    = pspencoder(image) + latent_avg                  (B, n_styles, style_dim)
    w_plus   = g_all.style(codes)    every vector through the mapping MLP (a quirk of the
                                     release that its weights were trained with)
    features = g_all.synthesis(w_plus) with the stored noise maps, RGB not needed
    heatmaps = interpreter(features)                            (B, 32, 128, 128), raw

Decoding: clamp to [-1, 1], keep the dataset's first n channels; the score of an AU is the
mean of its heatmap and the AU is active iff that mean is > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fgnet_video.model.config import FGNetConfig
from fgnet_video.model.interpreter import PyramidInterpreter
from fgnet_video.model.psp import GradualStyleEncoder
from fgnet_video.model.stylegan2 import Generator


@dataclass
class ForwardTrace:
    """Intermediate results of one forward pass (for parity checks and analysis)."""

    codes: torch.Tensor
    w_plus: torch.Tensor
    features: list[torch.Tensor]
    heatmaps: torch.Tensor
    image: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # the interpreter's last hidden map (before its head)


class FGNet(nn.Module):
    """FG-Net with submodules named as in the release: `pspencoder`, `g_all`, `interpreter`."""

    def __init__(self, config: FGNetConfig):
        super().__init__()
        self.config = config
        self.pspencoder = GradualStyleEncoder(config)
        self.g_all = Generator(config)
        self.interpreter = PyramidInterpreter(config)
        self.register_buffer("latent_avg", torch.zeros(config.style_dim))

    @property
    def n_styles_used(self) -> int:
        """W+ vectors the computed levels read (the last level's ToRGB style is not needed)."""
        return 2 * self.config.computed_levels - 1

    def _generate(self, images: torch.Tensor, rgb: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                   list[torch.Tensor],
                                                                   torch.Tensor | None]:
        """(codes, w_plus, features, RGB image or None): encoder, mapping and synthesis."""
        n_levels = self.config.n_levels if rgb else self.config.computed_levels
        n_styles = self.config.n_styles if rgb else self.n_styles_used
        codes = self.pspencoder(images, n_styles=n_styles) + self.latent_avg
        w_plus = self.g_all.mapping(codes)
        features, image = self.g_all.synthesis(w_plus, n_levels=n_levels, rgb=rgb)
        return codes, w_plus, features, image

    def trace(self, images: torch.Tensor, rgb: bool = False) -> ForwardTrace:
        """Full forward pass keeping the intermediates; `rgb` also renders the generator image
        (the release computed it; FG-Net does not use it)."""
        codes, w_plus, features, image = self._generate(images, rgb)
        hidden = self.interpreter.hidden(features)
        heatmaps = self.interpreter.head(hidden)
        return ForwardTrace(codes, w_plus, features, heatmaps, image, hidden)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """The generator's RGB image (B, 3, resolution, resolution) of the faces (pSp's
        reconstruction), without running the interpreter."""
        return self._generate(images, rgb=True)[3]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw (unclamped) heatmaps (B, n_heatmaps, heatmap_size, heatmap_size) from faces
        (B, 3, image_size, image_size) in [-1, 1]."""
        return self.trace(images).heatmaps


def decode_heatmaps(raw: torch.Tensor, n_aus: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(clamped heatmaps[:, :n_aus], scores (B, n_aus)); an AU is active iff its score > 0."""
    heatmaps = raw[:, :n_aus].float().clamp(-1.0, 1.0)
    return heatmaps, heatmaps.mean(dim=(2, 3))


def build_model(config: FGNetConfig) -> FGNet:
    """A randomly initialised FG-Net in eval mode."""
    return FGNet(config).eval()
