"""Which implementation a StyleGAN2 op runs: the `impl=` argument of every op.

- "auto": the compiled plugin for CUDA tensors of fp32/fp16/bf16 when it builds, the
  pure-PyTorch reference otherwise (a failed build warns once, in one line);
- "cuda": the compiled plugin, required: UserError when a tensor cannot use it or the plugin
  is unavailable;
- "ref": the pure-PyTorch reference, always;
- None: the user's default, `default_impl()`: $FGNET_VIDEO_KERNELS, read once per process
  ("auto" when unset).

Modules that call the ops carry an `impl` attribute (default None) that they pass on;
`set_kernel_impl` sets it on every such module of a model. Nothing here writes os.environ.
"""

from __future__ import annotations

import functools
import os

from torch import nn

from fgnet_video.errors import UserError

IMPL_ENV = "FGNET_VIDEO_KERNELS"
IMPLS = ("auto", "cuda", "ref")


@functools.cache
def default_impl() -> str:
    """$FGNET_VIDEO_KERNELS ("auto" when unset or empty), read on the first call and kept
    (`default_impl.cache_clear()` or `build.reset_plugin_state()` make the next call read it
    again); UserError naming the variable when its value is not one of IMPLS."""
    value = os.environ.get(IMPL_ENV, "").strip().lower() or "auto"
    if value not in IMPLS:
        raise UserError(f"{IMPL_ENV} must be one of {', '.join(IMPLS)}, not {value!r}")
    return value


def check_impl(impl: str | None) -> str | None:
    """`impl` itself when it is one of IMPLS or None; ValueError otherwise."""
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)} or None (the default "
                         f"from {IMPL_ENV}), not {impl!r}")
    return impl


def resolve_impl(impl: str | None) -> str:
    """The implementation an op runs for its `impl` argument: `impl` itself, or
    default_impl() for None."""
    return check_impl(impl) or default_impl()


def set_kernel_impl(module: nn.Module, impl: str | None) -> None:
    """Make every submodule of `module` (itself included) that carries an `impl` attribute
    call the ops with `impl` (None: the user's default); ValueError for an unknown value."""
    check_impl(impl)
    for child in module.modules():
        if hasattr(child, "impl"):
            child.impl = impl
