"""upfirdn2d: upsample, pad, FIR filter, downsample (StyleGAN2's resampling op).

For x of shape (N, C, H, W), a 2-D kernel k (kh x kw), integer factors up, down >= 1 and
pads (x0, x1, y0, y1) (a pair (p0, p1) means (p0, p1, p0, p1)), per axis:

    u[m]  = x[m / up] if up divides m, else 0,          m in [0, H*up)   zero insertion
    p[m]  = u[m - y0] (0 outside u),                      m in [0, H*up + y0 + y1)
                                                          (negative pads crop)
    f[m]  = sum_i p[m + i] * k[kh - 1 - i]                 true convolution (kernel flipped)
    y[o]  = f[o * down]

so the output has (H*up + y0 + y1 - kh) // down + 1 rows (same for columns with x0, x1, kw).
Every channel is filtered on its own with the same kernel.

The adjoint of upfirdn2d is again an upfirdn2d: with the flipped kernel, up and down swapped,
and pads p0' = kh - 1 - p0, p1' = H*up - out*down + p0 - up + 1 per axis
(`library.adjoint_params`); the compiled operator's autograd formula runs it, so the compiled
path differentiates any number of times. The kernel gets no gradient there: with "auto" a
kernel that requires grad goes through the reference, with "cuda" it is an error.

`upfirdn2d(..., impl=)` runs the compiled plugin or the reference `upfirdn2d_ref` as `impl`
says ("auto", "cuda", "ref", or None for the user's default: see impl.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fgnet_video.errors import UserError
from fgnet_video.kernels.build import plugin_for
from fgnet_video.kernels.impl import resolve_impl
from fgnet_video.kernels.library import Pads, output_size


def parse_pad(pad: Sequence[int]) -> Pads:
    """(x0, x1, y0, y1) from a pair (p0, p1) (both axes) or a 4-sequence."""
    values = tuple(int(p) for p in pad)
    if len(values) == 2:
        return values * 2
    if len(values) == 4:
        return values
    raise ValueError(f"pad must be (p0, p1) or (x0, x1, y0, y1), got {pad!r}")


def _check(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, pads: Pads) -> None:
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
    _check(x, kernel, up, down, pads)
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


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0, 0, 0), impl: str | None = None) -> torch.Tensor:
    """upfirdn2d through the implementation `impl` picks (see impl.py): "auto" the compiled
    kernel for a CUDA x of fp32/fp16/bf16 (unless the kernel needs a gradient), else the
    reference; "cuda" the compiled kernel or UserError; "ref" the reference; None the user's
    default."""
    impl = resolve_impl(impl)
    if kernel.requires_grad and torch.is_grad_enabled():
        if impl == "cuda":
            raise UserError("impl='cuda': the compiled upfirdn2d gives the FIR kernel no "
                            "gradient; use impl='ref' or 'auto' for a kernel that requires grad")
        plugin = None
    else:
        plugin = plugin_for(impl, x)
    if plugin is None:
        return upfirdn2d_ref(x, kernel, up, down, pad)
    pads = parse_pad(pad)
    _check(x, kernel, up, down, pads)
    return plugin.upfirdn2d(x, kernel.detach(), int(up), int(down), *pads)
