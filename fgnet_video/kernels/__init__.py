"""StyleGAN2's custom ops, each with a compiled CUDA path and a pure-PyTorch reference of the
same signature: fused bias + leaky ReLU and upfirdn2d.

Every op takes `impl=` (the stylegan2-ada `torch_utils/ops` shape; see impl.py): "auto" (the
compiled plugin for CUDA tensors of fp32/fp16/bf16 when it builds, else the reference),
"cuda" (the compiled plugin, required), "ref" (the reference), or None: the user's default,
$FGNET_VIDEO_KERNELS, read once per process. `set_kernel_impl` sets the choice on every op
module of a model. reference.py holds the references; build.py compiles and caches the
plugin, plugin.py loads, checks and chooses it; library.py defines its two kernels
as PyTorch operators (schemas, fake implementations, autograd), so the compiled path works
with meta tensors, torch.compile and CUDA graphs.

This package imports nothing of fgnet_video but errors, atomic and cache, so importing it
never pulls in the model or the weights.
"""

from fgnet_video.kernels.bias_act import fused_leaky_relu
from fgnet_video.kernels.impl import IMPL_ENV, IMPLS, default_impl, set_kernel_impl
from fgnet_video.kernels.plugin import load_plugin, plugin_status, reset_plugin_state
from fgnet_video.kernels.reference import fused_leaky_relu_ref, upfirdn2d_ref
from fgnet_video.kernels.upfirdn2d import upfirdn2d

__all__ = [
    "IMPLS",
    "IMPL_ENV",
    "default_impl",
    "fused_leaky_relu",
    "fused_leaky_relu_ref",
    "load_plugin",
    "plugin_status",
    "reset_plugin_state",
    "set_kernel_impl",
    "upfirdn2d",
    "upfirdn2d_ref",
]
