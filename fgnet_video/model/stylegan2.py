"""StyleGAN2 generator (config-f layout) that returns its per-resolution features.

Parameter and buffer names follow the common PyTorch layout of the release's `g_all`
(`style.N`, `input.input`, `conv1`, `to_rgb1`, `convs.N`, `to_rgbs.N`, `noises.noise_N`,
blur `*.kernel` buffers), so the release's state dict loads one to one.

Modulated convolution: with style s = A(w) (per input channel),
    y = conv(x * s, W * c) * d,   c = 1/sqrt(in * k * k),
    d = 1/sqrt(sum_{in,k,k} (c * W * s)^2 + 1e-8)   (demodulation, per output channel).
Two computation orders give the same y up to rounding:
- default, "modulate activations": scale x by s, one ordinary conv for the whole batch with
  the shared weight, scale the output by d;
- `fused_modconv` (the release's order): build each sample's weight c * W * s * d, fold the
  batch into the groups of one grouped conv.
An upsampling conv is a stride-2 transposed conv followed by a 4x4 blur (upfirdn2d).

The modules that call the StyleGAN2 ops (Blur, Upsample, FusedLeakyReLU, and EqualLinear in
layers.py) carry a plain `impl` attribute (None: the user's default) passed to the op; set it
model-wide with `fgnet_video.kernels.set_kernel_impl`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fgnet_video.kernels import fused_leaky_relu, upfirdn2d
from fgnet_video.model.config import FGNetConfig
from fgnet_video.model.layers import EqualLinear, PixelNorm, full_precision

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


def blur_kernel(gain: float = 1.0) -> torch.Tensor:
    """The separable [1, 3, 3, 1] FIR kernel, normalised to sum `gain`."""
    taps = torch.tensor(BLUR_TAPS)
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum() * gain


class Blur(nn.Module):
    """FIR blur after a stride-2 transposed conv (kernel stored as buffer `kernel`, sum 4);
    `impl`: upfirdn2d's implementation (None: the user's default)."""

    impl: str | None = None

    def __init__(self, pad: tuple[int, int]):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain=4.0))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad, impl=self.impl)


class Upsample(nn.Module):
    """x2 FIR upsampling of the RGB skip (zero insertion, pad (2, 1), kernel sum 4);
    `impl`: upfirdn2d's implementation (None: the user's default)."""

    impl: str | None = None

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain=4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=(2, 1), impl=self.impl)


class ModulatedConv2d(nn.Module):
    """Style-modulated k x k conv (weight stored (1, out, in, k, k)), optional x2 upsampling.

    Switches (plain attributes, so state dicts are unchanged):
    - `fused_modconv`: compute in the release's order (per-sample weights, grouped conv);
    - `fp32_coefficients`: under autocast, compute the style s and the demodulation d in fp32.
    """

    fused_modconv: bool = False
    fp32_coefficients: bool = False

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        if upsample:
            # transposed conv output is 2H + k - 2; the 4-tap blur brings it to 2H
            pad = len(BLUR_TAPS) - 2 - (kernel_size - 1)
            self.blur = Blur(pad=((pad + 1) // 2 + 1, pad // 2 + 1))

    def coefficients(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Style s (B, in) and demodulation d (B, out) (None without demodulation)."""
        with full_precision(w.device.type, self.fp32_coefficients):
            if self.fp32_coefficients:
                w = w.float()
            style = self.modulation(w)
            if not self.demodulate:
                return style, None
            weight = self.weight[0] * self.scale
            energy = style.square() @ weight.square().sum(dim=(2, 3)).t()
            return style, torch.rsqrt(energy + 1e-8)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style, demod = self.coefficients(w)
        if self.fused_modconv:
            return self._grouped(x, style, demod)
        weight = (self.weight[0] * self.scale).to(x.dtype)  # (out, in, k, k)
        x = x * style.to(x.dtype)[:, :, None, None]
        if self.upsample:
            x = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            x = F.conv2d(x, weight, padding=self.kernel_size // 2)
        if demod is not None:
            x = x * demod.to(x.dtype)[:, :, None, None]
        return x

    def _grouped(self, x: torch.Tensor, style: torch.Tensor,
                 demod: torch.Tensor | None) -> torch.Tensor:
        """The release's order: weights W * c * s * d per sample, batch folded into groups."""
        batch, in_ch, height, width = x.shape
        _, out_ch, _, k, _ = self.weight.shape
        weight = self.weight * self.scale * style[:, None, :, None, None]  # (B, out, in, k, k)
        if demod is not None:
            weight = weight * demod[:, :, None, None, None]
        weight = weight.to(x.dtype)
        x = x.reshape(1, batch * in_ch, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_ch, out_ch, k, k)
            x = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            return self.blur(x.reshape(batch, out_ch, *x.shape[2:]))
        x = F.conv2d(x, weight.reshape(batch * out_ch, in_ch, k, k), padding=k // 2,
                     groups=batch)
        return x.reshape(batch, out_ch, height, width)


def set_modconv_order(module: nn.Module, fused: bool) -> None:
    """Switch every ModulatedConv2d inside `module` to the release's order (True) or the
    default "modulate activations" order (False)."""
    for child in module.modules():
        if isinstance(child, ModulatedConv2d):
            child.fused_modconv = fused


class NoiseInjection(nn.Module):
    """x + weight * noise, with the generator's stored (fixed) noise map."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class FusedLeakyReLU(nn.Module):
    """leaky_relu(x + bias, 0.2) * sqrt(2), bias per channel; `impl`: the fused op's
    implementation (None: the user's default)."""

    impl: str | None = None

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias.to(x.dtype), impl=self.impl)


class StyledConv(nn.Module):
    """Modulated 3x3 conv -> stored noise -> bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, plus the upsampled previous skip."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None):
        out = self.conv(x, w) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class NoiseBuffers(nn.Module):
    """The fixed noise maps `noise_0..noise_{2L-2}`: noise_i has side 2**((i + 5) // 2)."""

    def __init__(self, n_layers: int):
        super().__init__()
        for i in range(n_layers):
            side = 2 ** ((i + 5) // 2)
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, side, side))

    def get(self, index: int) -> torch.Tensor:
        return getattr(self, f"noise_{index}")


class Generator(nn.Module):
    """StyleGAN2 synthesis network with its mapping MLP `style`.

    Style indices: level 0 (4 px) uses w[0] (conv1) and w[1] (to_rgb1); level k >= 1 uses
    w[2k-1], w[2k] (its two convs) and w[2k+1] (its ToRGB).
    """

    def __init__(self, config: FGNetConfig):
        super().__init__()
        dim, ch = config.style_dim, config.generator_channels
        self.config = config
        self.style = nn.Sequential(
            PixelNorm(),
            *(EqualLinear(dim, dim, lr_mul=config.lr_mlp, activation=True)
              for _ in range(config.n_mlp)),
        )
        self.input = ConstantInput(ch[0])
        self.conv1 = StyledConv(ch[0], ch[0], dim)
        self.to_rgb1 = ToRGB(ch[0], dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for level in range(1, config.n_levels):
            self.convs.append(StyledConv(ch[level - 1], ch[level], dim, upsample=True))
            self.convs.append(StyledConv(ch[level], ch[level], dim))
            self.to_rgbs.append(ToRGB(ch[level], dim))
        self.noises = NoiseBuffers(2 * config.n_levels - 1)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping MLP applied to every vector on the last axis: (..., dim) -> (..., dim)."""
        shape = z.shape
        return self.style(z.reshape(-1, shape[-1])).reshape(shape)

    def synthesis(
        self, w_plus: torch.Tensor, n_levels: int | None = None, rgb: bool = False
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Run levels 0..n_levels-1 from W+ codes (B, n_styles, dim).

        Returns the output of the last styled conv of each level and, if `rgb`, the RGB image
        of the last computed level (None otherwise; it is then not computed at all).
        """
        n_levels = self.config.n_levels if n_levels is None else n_levels
        x = self.input(w_plus.shape[0]).to(w_plus.dtype)
        x = self.conv1(x, w_plus[:, 0], self.noises.get(0))
        features = [x]
        image = self.to_rgb1(x, w_plus[:, 1]) if rgb else None
        for level in range(1, n_levels):
            first, second = self.convs[2 * level - 2], self.convs[2 * level - 1]
            x = first(x, w_plus[:, 2 * level - 1], self.noises.get(2 * level - 1))
            x = second(x, w_plus[:, 2 * level], self.noises.get(2 * level))
            features.append(x)
            if rgb:
                image = self.to_rgbs[level - 1](x, w_plus[:, 2 * level + 1], image)
        return features, image
