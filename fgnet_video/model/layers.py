"""Equalised-learning-rate building blocks shared by the pSp encoder and the StyleGAN2 generator.

Equalised learning rate: a weight is stored as w / lr_mul and used as
w * (lr_mul / sqrt(fan_in)); a bias is stored as b / lr_mul and used as b * lr_mul.

A module that calls a StyleGAN2 op carries a plain `impl` attribute (None: the user's default)
that it passes to the op; `fgnet_video.kernels.set_kernel_impl` sets it model-wide.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fgnet_video.kernels import fused_leaky_relu


@contextlib.contextmanager
def full_precision(device_type: str, enabled: bool = True) -> Iterator[None]:
    """Inside, autocast is off on `device_type` (when `enabled`): ops run in their inputs'
    dtype, so fp32 inputs give fp32 results."""
    if not enabled:
        yield
        return
    with torch.autocast(device_type, enabled=False):
        yield


class PixelNorm(nn.Module):
    """x / sqrt(mean(x**2 over the last axis) + 1e-8), i.e. each vector normalised on its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """y = x @ (w * lr_mul / sqrt(in))^T + b * lr_mul, optionally followed by the fused
    leaky ReLU (slope 0.2, gain sqrt 2) with the bias added before the activation.

    Plain attributes (state dicts are unchanged): `fp32_under_autocast` (off by default):
    compute in fp32 even under autocast, returning fp32; `impl`: the fused op's
    implementation (see fgnet_video.kernels; None: the user's default).
    """

    fp32_under_autocast: bool = False
    impl: str | None = None

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp32_under_autocast:
            with full_precision(x.device.type):
                return self._linear(x.float())
        return self._linear(x)

    def _linear(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias, impl=self.impl)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        out_dim, in_dim = self.weight.shape
        return f"{in_dim}, {out_dim}, lr_mul={self.lr_mul}, activation={self.activation}"
