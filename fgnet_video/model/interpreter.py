"""Pyramid CNN Interpreter: generator features -> AU heatmaps.

    c = f_0
    c = layer_{i-1}(c) + resize(f_i)      for i = 1 .. L-1
    heatmaps = layer_{L-1}(c)

`layer_i` is [x2 bilinear upsample (align_corners=True) while c is coarser than the
heatmaps] -> conv (3x3 in layer0, 5x5 elsewhere) -> ReLU -> Dropout -> BatchNorm; the last
layer adds a final 5x5 conv to `n_heatmaps` channels. Features finer than the heatmaps are
bilinearly resized down (align_corners=True). A level whose feature group is switched off
contributes nothing (and f_0 switched off starts c at zero). Names (`layer0.1.weight`, ...)
follow the release.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fgnet_video.model.config import FGNetConfig


def _block(in_ch: int, out_ch: int, kernel: int, dropout: float, upsample: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
    layers += [
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.BatchNorm2d(out_ch),
    ]
    return layers


class PyramidInterpreter(nn.Module):
    def __init__(self, config: FGNetConfig):
        super().__init__()
        self.config = config
        ch = config.generator_channels
        sides = config.level_resolutions
        n = config.n_levels
        self.used = config.used_levels
        for i in range(n):
            upsample = sides[i] < config.heatmap_size  # c is at side min(sides[i], heatmap)
            kernel = 3 if i == 0 else 5
            out_ch = ch[i + 1] if i < n - 1 else config.head_width
            layers = _block(ch[i], out_ch, kernel, config.dropout, upsample)
            if i == n - 1:
                layers.append(nn.Conv2d(out_ch, config.n_heatmaps, 5, padding=2))
            self.add_module(f"layer{i}", nn.Sequential(*layers))
        self.reset_parameters()

    def layer(self, i: int) -> nn.Sequential:
        return getattr(self, f"layer{i}")

    def reset_parameters(self) -> None:
        """The release's initialisation: conv weights N(0, 0.02), BN weights N(1, 0.02),
        biases 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def _resize(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.shape[-1] > self.config.heatmap_size:
            size = (self.config.heatmap_size, self.config.heatmap_size)
            return F.interpolate(feature, size=size, mode="bilinear", align_corners=True)
        return feature

    def hidden(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The last hidden pyramid map (B, head_width, heatmap_size, heatmap_size): the last
        layer's block before its output conv (auxiliary heads read it).

        `features` may stop early: levels past its end must be unused (switched off).
        """
        n = self.config.n_levels
        c = features[0] if self.used[0] else torch.zeros_like(features[0])
        for i in range(1, n):
            c = self.layer(i - 1)(c)
            if self.used[i]:
                c = c + self._resize(features[i]).to(c.dtype)
        return self.layer(n - 1)[:-1](c)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Heatmaps from the last hidden map (the output conv)."""
        return self.layer(self.config.n_levels - 1)[-1](hidden)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Heatmaps (B, n_heatmaps, heatmap_size, heatmap_size) from the generator features."""
        return self.head(self.hidden(features))
