"""Self-check of a compiled plugin against the pure-PyTorch references, before it is trusted.

On the first load of each build, every compiled op runs on small random inputs shaped like
the generator's (a styled conv's bias + leaky ReLU on feature maps, the mapping MLP's on
vectors; the upsampling conv's 4x4 blur, the RGB skip's x2 FIR upsampling and a x2 FIR
downsampling), in fp32, fp16 and bf16, forward and backward, and is compared with the
reference computed in fp32 from the same inputs:

    max |compiled - reference| <= atol + rtol * max |reference|     (per output, per dtype)

with (rtol, atol) = (1e-5, 1e-6) in fp32, (1e-2, 1e-3) in fp16 and (3e-2, 3e-3) in bf16. The
verdict is kept beside the build (`selfcheck.json`), so later processes read it instead of
checking again, and `doctor` reports it. A plugin that fails is never used: the ops fall back
to the reference with one warning line, so an unvalidated GPU cannot silently give wrong AU
codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from fgnet_video.atomic import atomic_path
from fgnet_video.kernels.library import OpSet
from fgnet_video.kernels.reference import fused_leaky_relu_ref, parse_pad, upfirdn2d_ref

VERDICT_FILE = "selfcheck.json"
TOLERANCES = {torch.float32: (1e-5, 1e-6), torch.float16: (1e-2, 1e-3),
              torch.bfloat16: (3e-2, 3e-3)}
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
KINK_MARGIN = 0.25

# (x shape, up, down, pads): the generator's blur after an upsampling conv, its RGB skip
# upsampling, and a downsampling filter
UPFIRDN_CASES = (
    ((2, 16, 19, 19), 1, 1, (1, 1, 1, 1)),
    ((2, 3, 16, 16), 2, 1, (2, 1, 2, 1)),
    ((2, 8, 16, 16), 1, 2, (1, 1, 1, 1)),
)
BIAS_ACT_SHAPES = ((2, 32, 16, 16), (4, 64))


def _blur_kernel(device: torch.device) -> torch.Tensor:
    taps = torch.tensor(BLUR_TAPS, device=device)
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


def _compare(name: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> str | None:
    rtol, atol = TOLERANCES[dtype]
    got, want = got.float(), want.float()
    if not torch.isfinite(got).all():
        return f"{name} in {str(dtype).removeprefix('torch.')}: non-finite values"
    error = (got - want).abs().max().item()
    limit = atol + rtol * want.abs().max().item()
    if error > limit:
        return (f"{name} in {str(dtype).removeprefix('torch.')}: max error {error:.3g} "
                f"(allowed {limit:.3g})")
    return None


def _check_op(name: str, compiled: Callable, reference: Callable, x: torch.Tensor,
              dtype: torch.dtype) -> str | None:
    """Forward and input gradient of `compiled` on x in `dtype` against `reference` on the
    same values in fp32."""
    x_low = x.to(dtype).requires_grad_()
    x_ref = x_low.detach().float().requires_grad_()
    y_low = compiled(x_low)
    y_ref = reference(x_ref)
    problem = _compare(f"{name} forward", y_low, y_ref, dtype)
    if problem:
        return problem
    upstream = torch.randn_like(y_ref)
    (dx_low,) = torch.autograd.grad(y_low, x_low, upstream.to(dtype))
    (dx_ref,) = torch.autograd.grad(y_ref, x_ref, upstream)
    return _compare(f"{name} backward", dx_low, dx_ref, dtype)


def self_check(plugin: OpSet, device: torch.device, seed: int = 0) -> str | None:
    """None when both operators of `plugin` match their references on `device` (see the
    module docstring), forward and through their autograd formulas, else one line naming the
    first op, dtype and error that do not."""

    generator = torch.Generator(device="cpu").manual_seed(seed)
    kernel = _blur_kernel(device)
    dtypes = [d for d in TOLERANCES if device.type == "cuda" or d != torch.float16]
    for dtype in dtypes:
        for shape in BIAS_ACT_SHAPES:
            # x + bias kept away from the kink at 0, where rounding to fp16/bf16 could flip
            # the side (and the gradient's slope) for the compiled and the reference op alike
            pre = torch.randn(shape, generator=generator)
            pre = pre + KINK_MARGIN * pre.sign()
            bias = torch.randn(shape[1], generator=generator)
            x = (pre - bias.view(1, -1, *([1] * (len(shape) - 2)))).to(device)
            bias = bias.to(device)
            problem = _check_op(
                f"bias_act {tuple(shape)}",
                lambda a, b=bias: plugin.bias_act(a, b.to(a.dtype), None, False, 0.2, 2**0.5),
                lambda a, b=bias: fused_leaky_relu_ref(a, b, 0.2, 2**0.5), x, dtype)
            if problem:
                return problem
        for shape, up, down, pads in UPFIRDN_CASES:
            x = torch.randn(shape, generator=generator).to(device)
            k = kernel * (up * up)
            problem = _check_op(
                f"upfirdn2d {tuple(shape)} up {up} down {down}",
                lambda a, k=k, u=up, d=down, p=pads: plugin.upfirdn2d(a, k, u, d, *parse_pad(p)),
                lambda a, k=k, u=up, d=down, p=pads: upfirdn2d_ref(a, k, u, d, p), x, dtype)
            if problem:
                return problem
    return None


def read_verdict(directory: Path) -> dict | None:
    """The verdict kept beside a build ({'ok', 'problem', 'device'}), None when there is none
    (or it is unreadable)."""
    try:
        verdict = json.loads((directory / VERDICT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) and "ok" in verdict else None


def checked(plugin: OpSet, directory: Path, device: torch.device) -> str | None:
    """The build's verdict: read from beside it, or found by `self_check` on `device` and
    kept there. None when the plugin may be used, else the one-line problem."""
    verdict = read_verdict(directory)
    if verdict is None:
        problem = self_check(plugin, device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
        verdict = {"ok": problem is None, "problem": problem, "device": name}
        try:
            with atomic_path(directory / VERDICT_FILE) as tmp:
                tmp.write_text(json.dumps(verdict, indent=2) + "\n")
        except OSError:
            pass  # checked again by the next process
    return None if verdict["ok"] else f"self-check failed: {verdict.get('problem')}"
