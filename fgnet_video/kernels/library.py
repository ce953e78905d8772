"""The compiled ops as PyTorch operators: `<namespace>::bias_act` and `<namespace>::upfirdn2d`.

`define_ops(namespace)` defines everything about the two operators but their kernels, from
Python: the schemas (SCHEMAS), the fake implementations (the output's shape, dtype and
device from the inputs' alone, for meta tensors, FakeTensor and torch.compile) and the
autograd formulas, written with the same operators so that they differentiate any number of
times:

- bias_act in forward mode saves its output y; the input gradient is bias_act in gradient
  mode, dx = bias_act(dy, ref=y, grad=True), and the bias gradient is dx summed over all dims
  but 1. In gradient mode the op is linear in x with a coefficient that is piecewise constant
  in ref, so its gradient is itself again (and ref gets none).
- upfirdn2d's input gradient is the adjoint upfirdn2d (`adjoint_params`); the FIR kernel gets
  none (the wrappers send a kernel that needs a gradient to the reference).

The CUDA kernels come from the compiled library: ops.cpp registers them for the dispatch key
CUDA with TORCH_LIBRARY_IMPL under the library's name, which build.py makes unique per build
(fgnet_video_ops_<GPU arch tag>_<source hash>, also the .so's file name), so two builds
loaded into one process never share an operator. The tests define the same operators in
namespaces of their own with CPU kernels, which exercises these definitions without a GPU.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import torch
from torch.library import Library

# the compiled kernels' C++ signatures (ops.cpp) follow these: Tensor? is
# std::optional<at::Tensor>, float is double, int is int64_t
SCHEMAS = {
    "bias_act": "(Tensor x, Tensor? bias, Tensor? ref, bool grad, float slope, float gain) "
                "-> Tensor",
    "upfirdn2d": "(Tensor x, Tensor kernel, int up, int down, int pad_x0, int pad_x1, "
                 "int pad_y0, int pad_y1) -> Tensor",
}

Pads = tuple[int, int, int, int]


@dataclass(frozen=True)
class OpSet:
    """The two operators of one namespace, the "plugin" the wrappers call:

    bias_act(x, bias, ref, grad, slope, gain): forward mode (grad False, ref None)
        y = leaky_relu(x + bias, slope) * gain, bias (C,) along dim 1 or None; gradient mode
        (grad True, bias None) y = x * gain * (1 if ref > 0 else slope);
    upfirdn2d(x, kernel, up, down, pad_x0, pad_x1, pad_y0, pad_y1): see upfirdn2d.py.

    Both return a new contiguous tensor of x's dtype and device."""

    namespace: str
    bias_act: torch._ops.OpOverload
    upfirdn2d: torch._ops.OpOverload


_defined: dict[str, tuple[Library, OpSet]] = {}
_lock = threading.Lock()


def output_size(size: int, up: int, down: int, pad0: int, pad1: int, taps: int) -> int:
    """upfirdn2d's output length along one axis: (size*up + pad0 + pad1 - taps) // down + 1."""
    return (size * up + pad0 + pad1 - taps) // down + 1


def adjoint_params(in_h: int, in_w: int, kernel: torch.Tensor, up: int, down: int,
                   pads: Pads) -> tuple[torch.Tensor, int, int, Pads]:
    """(kernel, up, down, pads) of the upfirdn2d that is the adjoint of the given one on an
    in_h x in_w input: it maps output gradients back to input gradients."""
    x0, x1, y0, y1 = pads
    kh, kw = kernel.shape
    out_h = output_size(in_h, up, down, y0, y1, kh)
    out_w = output_size(in_w, up, down, x0, x1, kw)
    grad_pads = (kw - 1 - x0, in_w * up - out_w * down + x0 - up + 1,
                 kh - 1 - y0, in_h * up - out_h * down + y0 - up + 1)
    return kernel.flip([0, 1]), down, up, grad_pads


def _bias_act_fake(x, bias, ref, grad, slope, gain):
    return x.new_empty(x.shape)


def _bias_act_setup(ctx, inputs, output):
    x, bias, ref, grad, slope, gain = inputs
    ctx.save_for_backward(ref if grad else output)  # its sign picks the slope
    ctx.slope, ctx.gain = slope, gain


def _bias_act_backward(op, ctx, dy):
    (sign_source,) = ctx.saved_tensors
    dx = op(dy, None, sign_source, True, ctx.slope, ctx.gain)
    dbias = None
    if ctx.needs_input_grad[1]:
        dbias = dx.sum([d for d in range(dx.dim()) if d != 1])
    return dx, dbias, None, None, None, None


def _upfirdn2d_fake(x, kernel, up, down, pad_x0, pad_x1, pad_y0, pad_y1):
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    return x.new_empty((n, c, output_size(h, up, down, pad_y0, pad_y1, kh),
                        output_size(w, up, down, pad_x0, pad_x1, kw)))


def _upfirdn2d_setup(ctx, inputs, output):
    x, kernel, up, down, *pads = inputs
    ctx.save_for_backward(kernel)
    ctx.geometry = (x.shape[2], x.shape[3], up, down, tuple(pads))


def _upfirdn2d_backward(op, ctx, dy):
    (kernel,) = ctx.saved_tensors
    in_h, in_w, up, down, pads = ctx.geometry
    adjoint_kernel, adjoint_up, adjoint_down, adjoint_pads = adjoint_params(
        in_h, in_w, kernel, up, down, pads)
    dx = op(dy, adjoint_kernel, adjoint_up, adjoint_down, *adjoint_pads)
    return (dx,) + (None,) * 7


def define_ops(namespace: str) -> OpSet:
    """The operators of `namespace`, with their schemas, fake implementations and autograd
    formulas (see the module docstring), defined on the first call for the namespace and kept
    for the life of the process; later calls return the same OpSet. Their kernels are
    registered separately, for CUDA by loading the compiled library."""
    with _lock:
        if namespace in _defined:
            return _defined[namespace][1]
        library = Library(namespace, "DEF")
        for name, schema in SCHEMAS.items():
            library.define(name + schema)
        namespace_ops = getattr(torch.ops, namespace)
        ops = OpSet(namespace, namespace_ops.bias_act.default, namespace_ops.upfirdn2d.default)
        for op, fake, setup, backward in (
                (ops.bias_act, _bias_act_fake, _bias_act_setup, _bias_act_backward),
                (ops.upfirdn2d, _upfirdn2d_fake, _upfirdn2d_setup, _upfirdn2d_backward)):
            torch.library.register_fake(op, fake, lib=library)
            torch.library.register_autograd(op, functools.partial(backward, op),
                                            setup_context=setup, lib=library)
        _defined[namespace] = (library, ops)
        return ops
