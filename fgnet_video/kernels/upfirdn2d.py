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

from fgnet_video.errors import UserError
from fgnet_video.kernels.impl import resolve_impl
from fgnet_video.kernels.plugin import plugin_for
from fgnet_video.kernels.reference import check_upfirdn2d, parse_pad, upfirdn2d_ref


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
    check_upfirdn2d(x, kernel, up, down, pads)
    return plugin.upfirdn2d(x, kernel.detach(), int(up), int(down), *pads)
