"""Fused bias + leaky ReLU, StyleGAN2's activation:

    y = leaky_relu(x + b, negative_slope) * scale,   b broadcast along dim 1,

with defaults slope 0.2 and gain sqrt(2). x is (N, C) or (N, C, ...); the bias, when given,
has C entries and is cast to x's dtype, so y has x's dtype. negative_slope must be >= 0 and
scale > 0: then y > 0 exactly where x + b > 0, which lets the gradient be computed from the
saved output alone:

    dL/dx = dL/dy * scale * (1 if y > 0 else negative_slope),   dL/db = sum of dL/dx over all
    dims but 1.

That gradient is linear in dL/dy with a coefficient that is piecewise constant in y, so it is
the same op again (its own derivative w.r.t. y is zero almost everywhere): the compiled
operator's autograd formula (library.py) differentiates any number of times.

`fused_leaky_relu(..., impl=)` runs the compiled plugin or the reference `fused_leaky_relu_ref`
as `impl` says ("auto", "cuda", "ref", or None for the user's default: see impl.py).
"""

from __future__ import annotations

import torch

from fgnet_video.kernels.plugin import plugin_for
from fgnet_video.kernels.reference import SQRT2, check_bias_act, fused_leaky_relu_ref


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None,
                     negative_slope: float = 0.2, scale: float = SQRT2,
                     impl: str | None = None) -> torch.Tensor:
    """Fused bias + leaky ReLU through the implementation `impl` picks (see impl.py): "auto"
    the compiled kernel for a CUDA x of fp32/fp16/bf16, else the reference; "cuda" the
    compiled kernel or UserError; "ref" the reference; None the user's default."""
    plugin = plugin_for(impl, x)
    if plugin is None:
        return fused_leaky_relu_ref(x, bias, negative_slope, scale)
    check_bias_act(x, bias, negative_slope, scale)
    if bias is not None:
        bias = bias.to(x.dtype)
    return plugin.bias_act(x, bias, None, False, float(negative_slope), float(scale))

