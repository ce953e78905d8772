"""The pure-PyTorch references of the StyleGAN2 ops, `fused_leaky_relu_ref` and
`upfirdn2d_ref` (their math is in bias_act.py and upfirdn2d.py), with the argument checks
both paths share. Imports nothing of the plugin: the self-check and the ops import these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fgnet_video.kernels.library import Pads, output_size

SQRT2 = math.sqrt(2.0)


def check_bias_act(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float,
           scale: float) -> None:
    if x.dim() < 2:
        raise ValueError(f"fused_leaky_relu needs x with a channel dim 1, got {tuple(x.shape)}")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != x.shape[1]):
        raise ValueError(f"bias of shape {tuple(bias.shape)} does not match {x.shape[1]} channels")
    if negative_slope < 0 or scale <= 0:
        raise ValueError(f"need negative_slope >= 0 and scale > 0, got {negative_slope}, {scale}")


def fused_leaky_relu_ref(x: torch.Tensor, bias: torch.Tensor | None = None,
                         negative_slope: float = 0.2, scale: float = SQRT2) -> torch.Tensor:
    """Reference fused bias + leaky ReLU in plain PyTorch (the path off CUDA)."""
    check_bias_act(x, bias, negative_slope, scale)
    if bias is None:
        y = F.leaky_relu(x, negative_slope)
    else:
        y = x + bias.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        if torch.is_grad_enabled() and y.requires_grad:
            y = F.leaky_relu(y, negative_slope)
        else:  # inference: one buffer for the whole op
            y = F.leaky_relu_(y, negative_slope)
    # leaky_relu keeps its input (not its output) for backward, so scaling in place is safe
    return y.mul_(scale)


def parse_pad(pad: Sequence[int]) -> Pads:
    """(x0, x1, y0, y1) from a pair (p0, p1) (both axes) or a 4-sequence."""
    values = tuple(int(p) for p in pad)
    if len(values) == 2:
        return values * 2
    if len(values) == 4:
        return values
    raise ValueError(f"pad must be (p0, p1) or (x0, x1, y0, y1), got {pad!r}")


def check_upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, pads: Pads) -> None:
    if x.dim() != 4:
        raise ValueError(f"upfirdn2d needs x of shape (N, C, H, W), got {tuple(x.shape)}")
    if kernel.dim() != 2 or kernel.numel() == 0:
        raise ValueError(f"upfirdn2d needs a non-empty 2-D kernel, got {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got {up}, {down}")
    x0, x1, y0, y1 = pads
    kh, kw = kernel.shape
    if (output_size(x.shape[2], up, down, y0, y1, kh) < 1
            or output_size(x.shape[3], up, down, x0, x1, kw) < 1):
        raise ValueError(
            f"upfirdn2d: padded input {tuple(x.shape[2:])} (up {up}, pad {pads}) is smaller "
            f"than the kernel {kh}x{kw}")


def _pad_or_crop(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) the last two axes."""
    grow = [max(p, 0) for p in (left, right, top, bottom)]
    if any(grow):
        x = F.pad(x, grow)
    if min(left, right, top, bottom) < 0:
        h, w = x.shape[2], x.shape[3]
        x = x[:, :, max(-top, 0): h - max(-bottom, 0), max(-left, 0): w - max(-right, 0)]
    return x


def upfirdn2d_ref(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                  pad: Sequence[int] = (0, 0, 0, 0)) -> torch.Tensor:
    """Reference upfirdn2d in plain PyTorch (the path off CUDA).

    A depthwise transposed convolution with stride `up` computes the full convolution of the
    zero-inserted input without materialising the zeros; its `padding` trims the part of the
    requested window that both sides share, the rest is padded or cropped explicitly, and
    `down` keeps every down-th sample.
    """
    pads = parse_pad(pad)
    check_upfirdn2d(x, kernel, up, down, pads)
    x0, x1, y0, y1 = pads
    channels, (kh, kw) = x.shape[1], kernel.shape
    # the full convolution has (H-1)*up + kh samples; the window starts kh-1-p0 into it and
    # leaves kh-up-p1 at its end
    trims = (kw - 1 - x0, kw - up - x1, kh - 1 - y0, kh - up - y1)
    shared_y, shared_x = max(min(trims[2], trims[3]), 0), max(min(trims[0], trims[1]), 0)
    weight = kernel.to(x.dtype)[None, None].expand(channels, 1, kh, kw)
    out = F.conv_transpose2d(x, weight, stride=up, padding=(shared_y, shared_x), groups=channels)
    out = _pad_or_crop(out, shared_x - trims[0], shared_x - trims[1],
                       shared_y - trims[2], shared_y - trims[3])
    return out[:, :, ::down, ::down] if down > 1 else out
