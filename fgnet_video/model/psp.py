"""pSp GradualStyleEncoder on an IR-SE body: aligned face -> W+ codes (before `latent_avg`).

Parameter names follow the pSp release so its state dicts load one to one:
`input_layer`, `body.N.{shortcut_layer,res_layer}`, `styles.N.{convs,linear}`,
`latlayer1`, `latlayer2`.

Feature taps (IR-SE-50): the output of body block 6 (1/4 of the input side, stage 2),
block 20 (1/8, stage 3) and block 23 (1/16, stage 4), i.e. the last block of stages 2-4.
Styles 0-2 read the coarsest map, 3-6 the middle one merged top-down, 7.. the finest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fgnet_video.model.config import FGNetConfig
from fgnet_video.model.layers import EqualLinear

COARSE_STYLES = 3
MIDDLE_STYLES_END = 7


class SEModule(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(avgpool(x))))), hidden width C // 16."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """IR-SE unit: BN-conv3x3-PReLU-conv3x3(stride)-BN-SE plus a (projected) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """Stride-2 3x3 convs with LeakyReLU(0.01) from `spatial` down to 1x1, then an EqualLinear."""

    def __init__(self, in_channels: int, out_channels: int, spatial: int):
        super().__init__()
        self.out_channels = out_channels
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [
                nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, 2, 1),
                nn.LeakyReLU(0.01),
            ]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels, lr_mul=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_channels))


def _upsample_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Top-down merge: bilinear (align_corners=True) resize of `coarse` to `lateral`, plus it."""
    size = lateral.shape[-2:]
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=True) + lateral


class GradualStyleEncoder(nn.Module):
    """pSp encoder: image in [-1, 1] (B, 3, S, S) -> style codes (B, n_styles, style_dim)."""

    def __init__(self, config: FGNetConfig):
        super().__init__()
        widths, units = config.encoder_widths, config.encoder_units
        self.n_styles = config.n_styles
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        )
        blocks: list[nn.Module] = []
        in_channels = widths[0]
        self.stage_ends: list[int] = []
        for depth, count in zip(widths, units, strict=True):
            for i in range(count):
                blocks.append(BottleneckIRSE(in_channels, depth, 2 if i == 0 else 1))
                in_channels = depth
            self.stage_ends.append(len(blocks) - 1)
        self.body = nn.Sequential(*blocks)

        coarse_side = config.image_size // 16
        top = widths[3]
        self.styles = nn.ModuleList(
            GradualStyleBlock(top, config.style_dim, self._style_spatial(i, coarse_side))
            for i in range(self.n_styles)
        )
        self.latlayer1 = nn.Conv2d(widths[2], top, 1)
        self.latlayer2 = nn.Conv2d(widths[1], top, 1)

    @staticmethod
    def _style_spatial(index: int, coarse_side: int) -> int:
        if index < COARSE_STYLES:
            return coarse_side
        if index < MIDDLE_STYLES_END:
            return coarse_side * 2
        return coarse_side * 4

    def forward(self, x: torch.Tensor, n_styles: int | None = None) -> torch.Tensor:
        """Codes for the first `n_styles` styles (all by default); the rest are not computed."""
        n_styles = self.n_styles if n_styles is None else n_styles
        x = self.input_layer(x)
        taps = {}
        for i, block in enumerate(self.body):
            x = block(x)
            if i in self.stage_ends[1:]:
                taps[i] = x
        fine, middle, coarse = (taps[i] for i in self.stage_ends[1:])

        codes = [self.styles[i](coarse) for i in range(min(n_styles, COARSE_STYLES))]
        if n_styles > COARSE_STYLES:
            merged = _upsample_add(coarse, self.latlayer1(middle))
            middle_end = min(n_styles, MIDDLE_STYLES_END)
            codes += [self.styles[i](merged) for i in range(COARSE_STYLES, middle_end)]
            if n_styles > MIDDLE_STYLES_END:
                merged = _upsample_add(merged, self.latlayer2(fine))
                codes += [self.styles[i](merged) for i in range(MIDDLE_STYLES_END, n_styles)]
        return torch.stack(codes, dim=1)
