"""StyleGAN2's custom ops, each with a compiled CUDA path and a pure-PyTorch reference of the
same signature: fused bias + leaky ReLU and upfirdn2d. See build.py for how the compiled
path is built and chosen (FGNET_VIDEO_KERNELS=ref forces the reference)."""

from fgnet_video.kernels.bias_act import fused_leaky_relu, fused_leaky_relu_ref
from fgnet_video.kernels.build import kernel_mode, load_plugin, plugin_status
from fgnet_video.kernels.upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = [
    "fused_leaky_relu",
    "fused_leaky_relu_ref",
    "kernel_mode",
    "load_plugin",
    "plugin_status",
    "upfirdn2d",
    "upfirdn2d_ref",
]
