"""StyleGAN2 ops: references against independent definitions, gradients, the compiled
operators' definitions (fake implementations, autograd formulas, adjoints, torch.compile;
through a CPU stand-in plugin registered as their CPU kernels), the C++ kernels' signatures
against the schemas, the CUDA kernels' index logic (compiled as C++ and emulated on the CPU),
the build/fallback machinery, the `impl=` choice and the default from FGNET_VIDEO_KERNELS, the
package's imports, and on a GPU the compiled ops against the references."""

from __future__ import annotations

import ctypes
import functools
import importlib
import itertools
import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import types
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fgnet_video.cache import file_lock
from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.kernels import bias_act as bias_act_module
from fgnet_video.kernels import (
    build,
    default_impl,
    fused_leaky_relu,
    fused_leaky_relu_ref,
    library,
    plugin,
    selfcheck,
    set_kernel_impl,
    toolkit,
    upfirdn2d,
    upfirdn2d_ref,
)
from fgnet_video.kernels.library import adjoint_params, output_size

REPO = Path(__file__).resolve().parents[1]
EMULATION = REPO / "tests" / "cuda_emulation"
KERNEL_SOURCES = REPO / "fgnet_video" / "kernels"
# the package exports a function of the same name, so fetch the module itself
upfirdn2d_module = importlib.import_module("fgnet_video.kernels.upfirdn2d")


def blur_kernel() -> torch.Tensor:
    """The generator's [1, 3, 3, 1] blur, normalised to sum 4 (as stored in the release)."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = taps[:, None] * taps[None, :]
    return k / k.sum() * 4


# -- independent definitions ---------------------------------------------------------------

def direct_upfirdn2d(x, kernel, up, down, pads):
    """upfirdn2d spelled out: explicit zero insertion, a zero canvas with the (possibly
    cropped) signal copied in, a sum of shifted slices times the flipped kernel, striding."""
    x0, x1, y0, y1 = pads
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    upsampled = x.new_zeros(n, c, h * up, w * up)
    upsampled[:, :, ::up, ::up] = x
    ph, pw = h * up + y0 + y1, w * up + x0 + x1
    canvas = x.new_zeros(n, c, ph, pw)
    # canvas[r, q] = upsampled[r - y0, q - x0] wherever both exist
    r0, r1 = max(y0, 0), min(ph, h * up + y0)
    q0, q1 = max(x0, 0), min(pw, w * up + x0)
    if r0 < r1 and q0 < q1:
        canvas[:, :, r0:r1, q0:q1] = upsampled[:, :, r0 - y0:r1 - y0, q0 - x0:q1 - x0]
    oh, ow = ph - kh + 1, pw - kw + 1
    out = x.new_zeros(n, c, oh, ow)
    for i in range(kh):
        for j in range(kw):
            out += canvas[:, :, i:i + oh, j:j + ow] * kernel[kh - 1 - i, kw - 1 - j]
    return out[:, :, ::down, ::down]


def direct_bias_act(x, bias, slope, gain):
    v = x if bias is None else x + bias.view(1, -1, *([1] * (x.dim() - 2)))
    return torch.where(v > 0, v, v * slope) * gain


def random_upfirdn_case(rng: random.Random, max_side: int = 9):
    """(shape, kernel shape, up, down, pads) with a non-empty output."""
    while True:
        up, down = rng.randint(1, 3), rng.randint(1, 3)
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        shape = (rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, max_side),
                 rng.randint(1, max_side))
        pads = tuple(rng.randint(-3, 4) for _ in range(4))
        if (output_size(shape[2], up, down, pads[2], pads[3], kh) >= 1
                and output_size(shape[3], up, down, pads[0], pads[1], kw) >= 1):
            return shape, (kh, kw), up, down, pads


# -- references -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_upfirdn2d_ref_matches_direct_definition(seed):
    shape, kshape, up, down, pads = random_upfirdn_case(random.Random(seed))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    kernel = torch.randn(kshape, generator=gen, dtype=torch.float64)
    got = upfirdn2d_ref(x, kernel, up, down, pads)
    expected = direct_upfirdn2d(x, kernel, up, down, pads)
    assert got.shape == expected.shape
    assert got.shape[2] == output_size(shape[2], up, down, pads[2], pads[3], kshape[0])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("up, pad, in_size, out_size", [(1, (1, 1), 17, 16), (2, (2, 1), 8, 16)])
def test_upfirdn2d_ref_generator_uses(up, pad, in_size, out_size):
    """The blur after a transposed conv (2H+1 -> 2H) and the RGB skip upsampling (H -> 2H)."""
    x = torch.randn(2, 4, in_size, in_size, dtype=torch.float64)
    kernel = blur_kernel().double()
    got = upfirdn2d_ref(x, kernel, up=up, pad=pad)
    assert got.shape == (2, 4, out_size, out_size)
    torch.testing.assert_close(got, direct_upfirdn2d(x, kernel, up, 1, pad * 2))
    if up == 2:  # upsampling a constant image keeps it constant away from the borders
        ones = upfirdn2d_ref(torch.ones(1, 1, 8, 8), blur_kernel(), up=2, pad=pad)
        torch.testing.assert_close(ones[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


def test_upfirdn2d_rejects_bad_arguments():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="pad must be"):
        upfirdn2d_ref(x, blur_kernel(), pad=(1, 1, 1))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        upfirdn2d_ref(x, blur_kernel(), pad=(-1, -1))
    with pytest.raises(ValueError, match="2-D kernel"):
        upfirdn2d_ref(x, torch.ones(4))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        upfirdn2d_ref(torch.zeros(4, 4), blur_kernel())


@pytest.mark.parametrize("shape, with_bias", [((5, 7), True), ((2, 3, 4, 5), True),
                                              ((2, 3, 4, 5), False), ((2, 3, 6), True)])
def test_fused_leaky_relu_ref_matches_formula(shape, with_bias):
    x = torch.randn(shape, dtype=torch.float64)
    bias = torch.randn(shape[1], dtype=torch.float64) if with_bias else None
    torch.testing.assert_close(fused_leaky_relu_ref(x, bias), direct_bias_act(x, bias, 0.2, 2**0.5))
    torch.testing.assert_close(fused_leaky_relu_ref(x, bias, 0.0, 3.0),
                               direct_bias_act(x, bias, 0.0, 3.0))


def test_fused_leaky_relu_ref_casts_bias_to_x_dtype():
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    assert fused_leaky_relu_ref(x, torch.randn(4)).dtype == torch.bfloat16


def test_fused_leaky_relu_rejects_bad_arguments():
    with pytest.raises(ValueError, match="does not match"):
        fused_leaky_relu_ref(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="negative_slope >= 0"):
        fused_leaky_relu_ref(torch.zeros(2, 3), None, -0.1)
    with pytest.raises(ValueError, match="channel dim"):
        fused_leaky_relu_ref(torch.zeros(3))


@pytest.mark.parametrize("seed", range(6))
def test_upfirdn2d_ref_gradcheck(seed):
    shape, kshape, up, down, pads = random_upfirdn_case(random.Random(100 + seed), max_side=5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(kshape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k: upfirdn2d_ref(a, k, up, down, pads), (x, kernel),
                                    fast_mode=True)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5, 4)])
def test_fused_leaky_relu_ref_gradcheck(shape):
    # keep x + b away from 0, where leaky ReLU has no derivative
    x = torch.randn(shape, dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_()
    bias = torch.zeros(shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fused_leaky_relu_ref, (x, bias))
    assert torch.autograd.gradgradcheck(fused_leaky_relu_ref, (x, bias))


@pytest.mark.parametrize("seed", range(12))
def test_adjoint_params_give_the_input_gradient(seed):
    """The compiled backward runs upfirdn2d with adjoint_params: it must equal autograd's
    gradient of the reference."""
    shape, kshape, up, down, pads = random_upfirdn_case(random.Random(200 + seed))
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(kshape, dtype=torch.float64)
    y = upfirdn2d_ref(x, kernel, up, down, pads)
    dy = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, dy)
    k2, up2, down2, pads2 = adjoint_params(shape[2], shape[3], kernel, up, down, pads)
    torch.testing.assert_close(upfirdn2d_ref(dy, k2, up2, down2, pads2), expected)


# -- the compiled operators' definitions, with a CPU stand-in for the kernels ---------------

def stand_in_plugin():
    """The kernels' contract (see ops.h and library.OpSet) implemented with the direct
    definitions: a plain object with the two callables, counting its calls."""
    calls = {"bias_act": 0, "bias_act gradient mode": 0, "upfirdn2d": 0}

    def bias_act(x, bias, ref, grad, slope, gain):
        calls["bias_act"] += 1
        if grad:
            calls["bias_act gradient mode"] += 1
            return (x * torch.where(ref > 0, gain, gain * slope)).contiguous()
        return direct_bias_act(x, bias, slope, gain).contiguous()

    def upfirdn(x, kernel, up, down, px0, px1, py0, py1):
        calls["upfirdn2d"] += 1
        pads = (px0, px1, py0, py1)
        return direct_upfirdn2d(x, kernel.to(x.dtype), up, down, pads).contiguous()

    return types.SimpleNamespace(bias_act=bias_act, upfirdn2d=upfirdn, calls=calls)


_test_namespaces = itertools.count()


def registered(plugin) -> library.OpSet:
    """The operators as library.define_ops defines them for a compiled build, in a fresh
    namespace, with `plugin`'s callables as their CPU kernels (in place of the CUDA kernels
    a build registers): their fake implementations and autograd formulas are the real ones,
    and the kernels run below autograd, so gradients come from the formulas alone."""
    ops = library.define_ops(f"fgnet_video_test_{next(_test_namespaces)}")
    for name in library.SCHEMAS:
        torch.library.impl(f"{ops.namespace}::{name}", "CPU", getattr(plugin, name))
    return ops


@pytest.fixture
def stand_in(monkeypatch):
    """The stand-in plugin (returned, for its call counts), its operators the "compiled" path
    of both ops whatever the tensors."""
    plugin = stand_in_plugin()
    ops = registered(plugin)
    monkeypatch.setattr(bias_act_module, "plugin_for", lambda impl, *tensors: ops)
    monkeypatch.setattr(upfirdn2d_module, "plugin_for", lambda impl, *tensors: ops)
    return plugin


@pytest.mark.parametrize("seed", range(4))
def test_compiled_upfirdn2d_autograd(stand_in, seed):
    shape, kshape, up, down, pads = random_upfirdn_case(random.Random(300 + seed), max_side=5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(kshape, dtype=torch.float64)

    def op(a):
        return upfirdn2d(a, kernel, up, down, pads)

    torch.testing.assert_close(op(x), upfirdn2d_ref(x, kernel, up, down, pads))
    assert torch.autograd.gradcheck(op, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x,), fast_mode=True)
    assert stand_in.calls["upfirdn2d"] > 0


def test_compiled_upfirdn2d_kernel_with_grad_uses_reference(stand_in):
    kernel = blur_kernel().requires_grad_()
    upfirdn2d(torch.randn(1, 2, 8, 8), kernel, up=2, pad=(2, 1)).sum().backward()
    assert stand_in.calls["upfirdn2d"] == 0 and kernel.grad is not None


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5, 4)])
def test_compiled_fused_leaky_relu_autograd(stand_in, shape):
    x = torch.randn(shape, dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_()
    bias = torch.zeros(shape[1], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(fused_leaky_relu(x, bias), fused_leaky_relu_ref(x, bias))
    assert torch.autograd.gradcheck(fused_leaky_relu, (x, bias))
    assert torch.autograd.gradgradcheck(fused_leaky_relu, (x, bias))
    assert torch.autograd.gradcheck(lambda a: fused_leaky_relu(a, None, 0.1, 1.5), (x,))
    assert stand_in.calls["bias_act gradient mode"] > 0


def test_fake_implementations_give_the_kernels_output_shapes():
    """On meta tensors, operators with no kernel at all: the fake implementations alone."""
    ops = library.define_ops(f"fgnet_video_test_{next(_test_namespaces)}")
    rng = random.Random(500)
    for _ in range(20):
        shape, kshape, up, down, pads = random_upfirdn_case(rng)
        x = torch.empty(shape, dtype=torch.bfloat16, device="meta")
        y = ops.upfirdn2d(x, torch.empty(kshape, device="meta"), up, down, *pads)
        expected = upfirdn2d_ref(torch.zeros(shape), torch.zeros(kshape), up, down, pads)
        assert y.shape == expected.shape and y.dtype == torch.bfloat16 and y.is_meta
    for shape in [(4, 6), (2, 3, 5, 4)]:
        x = torch.empty(shape, dtype=torch.float16, device="meta")
        bias = torch.empty(shape[1], dtype=torch.float16, device="meta")
        for y in (ops.bias_act(x, bias, None, False, 0.2, 1.4),
                  ops.bias_act(x, None, x, True, 0.2, 1.4)):
            assert y.shape == shape and y.dtype == torch.float16 and y.is_meta


def test_define_ops_defines_a_namespace_once():
    namespace = f"fgnet_video_test_{next(_test_namespaces)}"
    ops = library.define_ops(namespace)
    assert library.define_ops(namespace) is ops
    for name, schema in library.SCHEMAS.items():
        assert str(getattr(ops, name)._schema) == f"{namespace}::{name}{schema}"


def test_operators_pass_torch_library_opcheck():
    """Schema, autograd registration, FakeTensor and AOT dispatch (dynamic shapes) of both
    operators, as torch.library.opcheck tests them."""
    ops = registered(stand_in_plugin())
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_()
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    y = direct_bias_act(x.detach(), bias.detach(), 0.2, 1.4)
    shape, kshape, up, down, pads = random_upfirdn_case(random.Random(600), max_side=6)
    cases = [
        (ops.bias_act, (x, bias, None, False, 0.2, 1.4)),
        (ops.bias_act, (x, None, None, False, 0.0, 2.0)),
        (ops.bias_act, (x, None, y, True, 0.2, 1.4)),
        (ops.upfirdn2d, (torch.randn(shape, dtype=torch.float64, requires_grad=True),
                         torch.randn(kshape, dtype=torch.float64), up, down, *pads)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_operators_compose_with_torch_compile():
    """A whole graph of both operators, forward and backward, traced by torch.compile with
    dynamic shapes (no graph break): the same values and gradients as the references."""
    ops = registered(stand_in_plugin())
    kernel = blur_kernel().double()
    bias = torch.randn(3, dtype=torch.float64)

    def model(x, act, fir):
        return fir(act(x, bias), kernel).square().sum()

    def compiled_ops(x):
        y = ops.upfirdn2d(ops.bias_act(x, bias, None, False, 0.2, 1.4), kernel, 2, 1, 2, 1, 2, 1)
        return y.square().sum()

    compiled = torch.compile(compiled_ops, backend="aot_eager", fullgraph=True, dynamic=True)
    for size in (5, 8):
        x = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
        got = compiled(x)
        (got_grad,) = torch.autograd.grad(got, x)
        expected = model(x, lambda a, b: fused_leaky_relu_ref(a, b, 0.2, 1.4),
                         lambda a, k: upfirdn2d_ref(a, k, 2, 1, (2, 1)))
        (expected_grad,) = torch.autograd.grad(expected, x)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(got_grad, expected_grad)


def _cpp_signature(source: str, function: str) -> list[tuple[str, str]]:
    """(type, name) of each parameter of `at::Tensor function(...)` in a C++ source."""
    match = re.search(rf"^at::Tensor {function}\((.*?)\) {{", source, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no at::Tensor {function}(...) in ops.cpp"
    params = [" ".join(p.split()) for p in match.group(1).split(",")]
    return [tuple(p.rsplit(" ", 1)) for p in params]


def test_the_cuda_kernels_signatures_match_the_schemas():
    """ops.cpp registers a kernel per schema, with the C++ parameter types and names the
    dispatcher expects (it checks again when a build loads), and includes no
    torch/extension.h or pybind11 (the build stays a plain shared library)."""
    source = (KERNEL_SOURCES / "ops.cpp").read_text()
    block = re.search(r"TORCH_LIBRARY_IMPL\(TORCH_EXTENSION_NAME, CUDA, m\) \{(.*?)\}", source,
                      re.DOTALL)
    assert block is not None
    impls = dict(re.findall(r'm\.impl\("(\w+)", &(\w+)\);', block.group(1)))
    assert sorted(impls) == sorted(library.SCHEMAS)
    cpp_types = {"Tensor": "const at::Tensor&", "Tensor?": "const std::optional<at::Tensor>&",
                 "bool": "bool", "float": "double", "int": "int64_t"}
    for name, schema in library.SCHEMAS.items():
        arguments, returns = re.fullmatch(r"\((.*)\) -> (\w+)", schema).groups()
        assert returns == "Tensor"
        expected = [(cpp_types[kind], arg) for kind, arg in
                    (a.strip().rsplit(" ", 1) for a in arguments.split(","))]
        assert _cpp_signature(source, impls[name]) == expected, name
    assert not re.search(r"#include <(torch/extension\.h|pybind11)", source)


# -- the CUDA kernels' index logic, emulated on the CPU --------------------------------------

@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """The kernel headers compiled as C++ with the CPU emulation (see cuda_emulation/)."""
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++ or clang++) to build the kernel emulation")
    library = tmp_path_factory.mktemp("emulation") / "emulate.so"
    subprocess.run([compiler, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                    "-Wno-unknown-pragmas", f"-I{EMULATION / 'include'}", f"-I{KERNEL_SOURCES}",
                    str(EMULATION / "emulate.cpp"), "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    lib.emu_upfirdn2d.restype = ctypes.c_char_p
    lib.emu_bias_act.restype = ctypes.c_char_p
    return lib


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def emulated_upfirdn2d(lib, x, kernel, up, down, pads):
    x0, x1, y0, y1 = pads
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    oh, ow = output_size(h, up, down, y0, y1, kh), output_size(w, up, down, x0, x1, kw)
    x, kernel = x.float().contiguous(), kernel.float().contiguous()
    y = torch.full((n, c, oh, ow), math.nan)
    name = lib.emu_upfirdn2d(_ptr(x), _ptr(kernel), _ptr(y), ctypes.c_int64(n * c), h, w, oh, ow,
                             up, down, x0, y0, kh, kw)
    return y, name.decode()


UPFIRDN_EMULATION_CASES = [
    # (shape, kernel, up, down, pads, expected variant)
    ((1, 2, 17, 17), "blur", 1, 1, (1, 1, 1, 1), "tiled-up1-down1-k4"),
    ((1, 2, 41, 75), "random", 1, 1, (-2, 3, 2, -1), "tiled-up1-down1-k4"),
    ((1, 2, 9, 9), "blur", 1, 1, (1, 1, 1, 1), "direct"),
    ((1, 2, 8, 8), "blur", 2, 1, (2, 1, 2, 1), "tiled-up2-down1-k4"),
    ((1, 2, 19, 37), "random", 2, 1, (1, 3, 0, 2), "tiled-up2-down1-k4"),
    ((1, 2, 40, 70), "random", 1, 2, (2, 1, 2, 1), "tiled-up1-down2-k4"),
    ((1, 2, 33, 67), "random", 1, 2, (-1, 0, 3, -2), "tiled-up1-down2-k4"),
    ((2, 1, 4, 4), "blur", 2, 1, (2, 1, 2, 1), "direct"),
    ((1, 2, 30, 30), "random3", 1, 1, (1, 1, 1, 1), "direct"),
    ((2, 2, 7, 11), "random35", 3, 2, (-1, 2, 4, -2), "direct"),
]


@pytest.mark.parametrize("case", UPFIRDN_EMULATION_CASES, ids=lambda c: f"{c[-1]}-{c[0]}")
def test_emulated_upfirdn2d_kernels(emulated, case):
    shape, kind, up, down, pads, variant = case
    gen = torch.Generator().manual_seed(len(UPFIRDN_EMULATION_CASES))
    kernel = {"blur": blur_kernel(), "random": torch.randn(4, 4, generator=gen),
              "random3": torch.randn(3, 3, generator=gen),
              "random35": torch.randn(3, 5, generator=gen)}[kind]
    x = torch.randn(shape, generator=gen)
    got, name = emulated_upfirdn2d(emulated, x, kernel, up, down, pads)
    assert name == variant
    torch.testing.assert_close(got, upfirdn2d_ref(x, kernel, up, down, pads), rtol=1e-5, atol=1e-5)


def test_emulated_upfirdn2d_backward_pass(emulated):
    """The generator's ToRGB upsampling and its adjoint (a down-2 filter), as the compiled
    autograd runs them."""
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    y = upfirdn2d_ref(x, blur_kernel(), up=2, pad=(2, 1))
    dy = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, dy)
    kernel, up, down, pads = adjoint_params(32, 32, blur_kernel(), 2, 1, (2, 1, 2, 1))
    got, name = emulated_upfirdn2d(emulated, dy, kernel, up, down, pads)
    assert name == "tiled-up1-down2-k4"
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, with_bias, grad, offset", [
    ((2, 3, 5, 7), True, False, 0),    # inner 35: channel changes inside a 4-pack, 2-elt tail
    ((2, 3, 4, 8), True, False, 0),    # inner 32
    ((3, 50), True, False, 0),         # 2-D, inner 1
    ((2, 3, 5, 7), False, False, 0),
    ((2, 3, 5, 7), True, False, 1),    # misaligned start: scalar path
    ((2, 3, 5, 7), False, True, 0),
    ((2, 3, 5, 7), False, True, 1),
    ((1, 2, 1, 3), True, False, 0),    # fewer elements than a pack
])
def test_emulated_bias_act_kernel(emulated, shape, with_bias, grad, offset):
    numel = math.prod(shape)
    storage = torch.randn(numel + offset)
    x = storage[offset:].view(shape)
    bias = torch.randn(shape[1]) if with_bias else None
    ref = direct_bias_act(torch.randn(shape), None, 0.2, 1.4) if grad else None
    y_storage = torch.full((numel + offset,), math.nan)
    y = y_storage[offset:].view(shape)
    aligned = all(t.data_ptr() % 16 == 0 for t in (x, y) + ((ref,) if grad else ()))
    inner = numel // (shape[0] * shape[1])
    name = emulated.emu_bias_act(_ptr(x), _ptr(bias), _ptr(ref), _ptr(y), ctypes.c_int64(numel),
                                 ctypes.c_int64(shape[1]), ctypes.c_int64(inner),
                                 ctypes.c_float(0.2), ctypes.c_float(1.4), int(grad), int(aligned))
    expected_vector = aligned and numel >= 4
    assert name.decode().endswith("vector" if expected_vector else "scalar")
    expected = x * torch.where(ref > 0, 1.4, 0.28) if grad else direct_bias_act(x, bias, 0.2, 1.4)
    torch.testing.assert_close(y, expected)


# -- build machinery and fallback -----------------------------------------------------------

@pytest.fixture
def fresh_plugin_state():
    plugin.reset_plugin_state()
    yield
    plugin.reset_plugin_state()


def test_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path, fresh_plugin_state):
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path))
    attempts = []

    def failing_compile():
        attempts.append(1)
        raise RuntimeError("nvcc not found\nsecond line of the compiler log")

    monkeypatch.setattr(plugin, "_compile", failing_compile)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # route CPU tensors through the plugin loader, as CUDA tensors would be
    monkeypatch.setattr(bias_act_module, "plugin_for", lambda impl, *tensors: plugin.load_plugin())
    x, bias = torch.randn(2, 3, 4, 4), torch.randn(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fused_leaky_relu(x, bias)
        second = fused_leaky_relu(x, bias)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "nvcc not found" in messages[0] and "reference" in messages[0]
    assert len(attempts) == 1
    torch.testing.assert_close(first, fused_leaky_relu_ref(x, bias))
    torch.testing.assert_close(second, first)
    status = plugin.plugin_status()
    assert status.state == "failed" and status.active_path == "reference"
    log = status.directory / "build-error.log"
    assert "second line of the compiler log" in log.read_text()
    assert str(log) in messages[0]


CUDA_LIKE = types.SimpleNamespace(is_cuda=True, dtype=torch.float16)


def test_impl_picks_the_path(monkeypatch, fresh_plugin_state):
    fake = object()
    monkeypatch.setattr(plugin, "load_plugin", lambda: fake)
    monkeypatch.setattr(plugin, "_build_once", lambda: fake)
    for impl in ("auto", "cuda"):
        assert plugin.plugin_for(impl, CUDA_LIKE, None) is fake
    assert plugin.plugin_for("ref", CUDA_LIKE) is None
    # auto: CPU tensors and dtypes the plugin lacks take the reference
    assert plugin.plugin_for("auto", torch.zeros(1)) is None
    assert plugin.plugin_for("auto", types.SimpleNamespace(is_cuda=True, dtype=torch.float64)) \
        is None
    with pytest.raises(UserError, match="impl='cuda'.*cpu float64"):
        plugin.plugin_for("cuda", CUDA_LIKE, torch.zeros(1, dtype=torch.float64))


def test_cuda_impl_on_a_cpu_tensor_is_a_clear_error():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(UserError, match="impl='cuda'.*not on a cpu float32 tensor"):
        fused_leaky_relu(x, torch.zeros(3), impl="cuda")
    with pytest.raises(UserError, match="impl='cuda'.*not on a cpu float32 tensor"):
        upfirdn2d(x, blur_kernel(), pad=(1, 1), impl="cuda")
    with pytest.raises(UserError, match="no gradient"):
        upfirdn2d(x, blur_kernel().requires_grad_(), pad=(1, 1), impl="cuda")


def test_cuda_impl_without_the_plugin_is_a_clear_error(monkeypatch, fresh_plugin_state,
                                                       tmp_path):
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "cuda" raises instead of warning about a fallback
        with pytest.raises(UserError, match="compiled kernels, which are unavailable.*CUDA"):
            plugin.plugin_for("cuda", CUDA_LIKE)


def test_unknown_impl_is_refused():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="impl must be one of auto, cuda, ref"):
        fused_leaky_relu(x, None, impl="fast")
    with pytest.raises(ValueError, match="impl must be one of"):
        upfirdn2d(x, blur_kernel(), pad=(1, 1), impl="CUDA")
    with pytest.raises(ValueError, match="impl must be one of"):
        set_kernel_impl(torch.nn.Linear(1, 1), "compiled")


def test_ref_and_auto_give_identical_cpu_results():
    gen = torch.Generator().manual_seed(0)
    x, bias = torch.randn(2, 3, 9, 9, generator=gen), torch.randn(3, generator=gen)
    for impl in ("auto", None):
        torch.testing.assert_close(fused_leaky_relu(x, bias, impl=impl),
                                   fused_leaky_relu(x, bias, impl="ref"), rtol=0, atol=0)
        torch.testing.assert_close(upfirdn2d(x, blur_kernel(), 2, 1, (2, 1), impl=impl),
                                   upfirdn2d(x, blur_kernel(), 2, 1, (2, 1), impl="ref"),
                                   rtol=0, atol=0)


def test_default_impl_reads_the_variable_once(monkeypatch, fresh_plugin_state):
    monkeypatch.delenv("FGNET_VIDEO_KERNELS", raising=False)
    default_impl.cache_clear()
    assert default_impl() == "auto"
    monkeypatch.setenv("FGNET_VIDEO_KERNELS", "ref")
    assert default_impl() == "auto"  # read once, kept
    plugin.reset_plugin_state()
    assert default_impl() == "ref"
    assert plugin.plugin_for(None, CUDA_LIKE) is None
    assert plugin.plugin_status().state == "disabled"
    monkeypatch.setenv("FGNET_VIDEO_KERNELS", " CUDA ")
    default_impl.cache_clear()
    assert default_impl() == "cuda"
    monkeypatch.setenv("FGNET_VIDEO_KERNELS", "fast")
    default_impl.cache_clear()
    with pytest.raises(UserError, match="FGNET_VIDEO_KERNELS must be one of auto, cuda, ref"):
        fused_leaky_relu(torch.zeros(2, 3))


def test_set_kernel_impl_reaches_every_op_module():
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model

    model = random_model(TINY, seed=0)
    carriers = [m for m in model.modules() if hasattr(m, "impl")]
    kinds = {type(m).__name__ for m in carriers}
    assert {"EqualLinear", "Blur", "Upsample", "FusedLeakyReLU"} <= kinds
    assert all(m.impl is None for m in carriers)
    set_kernel_impl(model, "ref")
    assert all(m.impl == "ref" for m in carriers)
    set_kernel_impl(model, None)
    assert all(m.impl is None for m in carriers)


def test_importing_the_kernels_pulls_in_nothing_above_them(tmp_path):
    """kernels/ may import only torch, the stdlib and fgnet_video's foundation modules."""
    code = (
        "import sys, fgnet_video.kernels as k\n"
        "k.build.build_dir(); k.plugin_status(); k.default_impl()\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('fgnet_video'))))\n"
    )
    env = {**os.environ, "FGNET_VIDEO_HOME": str(tmp_path)}
    env.pop("FGNET_VIDEO_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=REPO, check=True).stdout.split()
    assert "fgnet_video.weights.store" not in out
    assert not [m for m in out if m == "fgnet_video.model" or m.startswith("fgnet_video.model.")]
    allowed = {"fgnet_video", "fgnet_video.errors", "fgnet_video.atomic", "fgnet_video.cache",
               "fgnet_video.lazy", "fgnet_video.version"}
    assert {m for m in out if not m.startswith("fgnet_video.kernels")} <= allowed, out


def test_cache_dir_is_keyed_by_versions_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path / "home"))
    directory = build.build_dir()
    assert directory.parent == tmp_path / "home" / "kernels"
    assert torch.__version__.split("+")[0] in directory.name
    assert directory.name.endswith(build.source_hash())
    copy = tmp_path / "sources"
    shutil.copytree(KERNEL_SOURCES, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(build, "SOURCE_DIR", copy)
    same = build.source_hash()
    (copy / "upfirdn2d.cu").write_text((copy / "upfirdn2d.cu").read_text() + "\n// edit\n")
    assert build.source_hash() != same
    assert same == directory.name.rsplit("-", 1)[1]
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6;9.0+PTX")
    assert "-sm86_90ptx-" in build.build_dir().name  # the same tag however it is named


def test_file_lock_serialises_holders_and_creates_its_folder(tmp_path):
    events = []

    def hold(name):
        with file_lock(tmp_path / "new" / "folder" / "build.lock"):
            events.append(f"{name} in")
            time.sleep(0.1)
            events.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events[0][0] == events[1][0] and events[2][0] == events[3][0]


# -- compiled vs reference on a GPU ----------------------------------------------------------
# (impl="cuda": the compiled path whatever FGNET_VIDEO_KERNELS says)

TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}


@pytest.fixture(scope="module")
def compiled():
    ops = plugin.load_plugin()
    assert ops is not None, f"plugin build failed: {plugin.plugin_status().error}"
    return ops


def _compare_upfirdn2d(x32, kernel, up, down, pads, dtype):
    x = x32.to(dtype).requires_grad_()
    y = upfirdn2d(x, kernel, up, down, pads, impl="cuda")
    assert y.dtype == dtype
    xr = x.detach().float().requires_grad_()
    yr = upfirdn2d_ref(xr, kernel, up, down, pads)
    tol = TOLERANCE[dtype] * max(1.0, yr.abs().max().item())
    torch.testing.assert_close(y.float(), yr, rtol=0, atol=tol)
    dy = torch.randn_like(yr)
    (dx,) = torch.autograd.grad(y, x, dy.to(dtype))
    (dxr,) = torch.autograd.grad(yr, xr, dy)
    grad_tol = TOLERANCE[dtype] * max(1.0, dxr.abs().max().item())
    torch.testing.assert_close(dx.float(), dxr, rtol=0, atol=grad_tol)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("resolution, channels", [(8, 512), (32, 512), (128, 256), (256, 128),
                                                  (1024, 32)])
def test_cuda_upfirdn2d_fgnet_shapes(compiled, dtype, resolution, channels):
    kernel = blur_kernel().cuda()
    blur_in = torch.randn(2, channels, resolution + 1, resolution + 1, device="cuda")
    _compare_upfirdn2d(blur_in, kernel, 1, 1, (1, 1, 1, 1), dtype)
    rgb = torch.randn(2, 3, resolution // 2, resolution // 2, device="cuda")
    _compare_upfirdn2d(rgb, kernel, 2, 1, (2, 1, 2, 1), dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seed", range(8))
def test_cuda_upfirdn2d_random(compiled, dtype, seed):
    rng = random.Random(400 + seed)
    shape, kshape, up, down, pads = random_upfirdn_case(rng)
    shape = (shape[0], shape[1], shape[2] * rng.choice([1, 7]), shape[3] * rng.choice([1, 9]))
    if output_size(shape[2], up, down, pads[2], pads[3], kshape[0]) < 1:
        pads = (pads[0], pads[1], kshape[0], kshape[0])
    if output_size(shape[3], up, down, pads[0], pads[1], kshape[1]) < 1:
        pads = (kshape[1], kshape[1], pads[2], pads[3])
    kernel = torch.randn(kshape, device="cuda")
    _compare_upfirdn2d(torch.randn(shape, device="cuda"), kernel, up, down, pads, dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(16, 512), (2, 512, 8, 8), (2, 64, 129, 131), (3, 5, 7),
                                   (2, 32, 256, 256)])
def test_cuda_fused_leaky_relu(compiled, dtype, shape):
    x = torch.randn(shape, device="cuda").to(dtype).requires_grad_()
    bias = torch.randn(shape[1], device="cuda", requires_grad=True)
    y = fused_leaky_relu(x, bias, impl="cuda")
    xr = x.detach().float().requires_grad_()
    br = bias.detach().to(dtype).float().requires_grad_()
    yr = fused_leaky_relu_ref(xr, br)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(y.float(), yr, rtol=tol, atol=tol)
    dy = torch.randn_like(yr)
    dx, db = torch.autograd.grad(y, (x, bias), dy.to(dtype))
    dxr, dbr = torch.autograd.grad(yr, (xr, br), dy)
    torch.testing.assert_close(dx.float(), dxr, rtol=tol, atol=tol)
    torch.testing.assert_close(db.float(), dbr, rtol=tol, atol=tol * math.sqrt(dx.numel()))
    assert db.dtype == bias.dtype


@pytest.mark.cuda
def test_cuda_double_backward(compiled):
    x = torch.randn(2, 8, 9, 9, device="cuda", dtype=torch.float32, requires_grad=True)
    kernel = blur_kernel().cuda()

    def model(fn_act, fn_fir, a):
        return fn_fir(fn_act(a, None), kernel, 2, 1, (2, 1, 2, 1)).square().sum()

    results = []
    compiled_ops = (functools.partial(fused_leaky_relu, impl="cuda"),
                    functools.partial(upfirdn2d, impl="cuda"))
    for act, fir in (compiled_ops, (fused_leaky_relu_ref, upfirdn2d_ref)):
        (g,) = torch.autograd.grad(model(act, fir, x), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x)
        results.append((g, gg))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
def test_cuda_non_contiguous_inputs(compiled):
    x = torch.randn(2, 8, 40, 40, device="cuda").transpose(2, 3)
    kernel = blur_kernel().cuda()
    torch.testing.assert_close(upfirdn2d(x, kernel, pad=(1, 1), impl="cuda"),
                               upfirdn2d_ref(x, kernel, pad=(1, 1)))
    bias = torch.randn(16, device="cuda")[::2]
    torch.testing.assert_close(fused_leaky_relu(x, bias, impl="cuda"),
                               fused_leaky_relu_ref(x, bias))


@pytest.mark.cuda
def test_cuda_ops_compose_with_torch_compile_and_cuda_graphs(compiled):
    """The compiled operators traced whole by torch.compile (forward and backward), and
    captured in a CUDA graph and replayed on new input: the eager operators' results."""
    kernel = blur_kernel().cuda()
    bias = torch.randn(8, device="cuda")

    def step(a):
        y = compiled.bias_act(a, bias, None, False, 0.2, 2**0.5)
        return compiled.upfirdn2d(y, kernel, 2, 1, 2, 1, 2, 1)

    x = torch.randn(2, 8, 16, 16, device="cuda", requires_grad=True)
    eager = step(x)
    (eager_grad,) = torch.autograd.grad(eager.square().sum(), x)
    traced = torch.compile(step, backend="aot_eager", fullgraph=True)
    got = traced(x)
    (got_grad,) = torch.autograd.grad(got.square().sum(), x)
    torch.testing.assert_close(got, eager)
    torch.testing.assert_close(got_grad, eager_grad)

    static_x = x.detach().clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the capture
        step(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = step(static_x)
    fresh = torch.randn_like(static_x)
    static_x.copy_(fresh)
    graph.replay()
    torch.testing.assert_close(static_y, step(fresh))


# -- the self-check of a new build ---------------------------------------------------------------

def broken_plugin(where: str):
    """The stand-in plugin with one wrong result: 'forward' (bias_act off by 0.1) or
    'backward' (the leaky slope of bias_act's gradient mode wrong)."""
    plugin = stand_in_plugin()
    good = plugin.bias_act

    def bias_act(x, bias, ref, grad, slope, gain):
        if where == "backward" and grad:
            return good(x, bias, ref, grad, slope * 2, gain)
        out = good(x, bias, ref, grad, slope, gain)
        return out + 0.1 if where == "forward" and not grad else out

    return types.SimpleNamespace(bias_act=bias_act, upfirdn2d=plugin.upfirdn2d)


def test_self_check_passes_a_correct_plugin_and_names_a_wrong_one():
    cpu = torch.device("cpu")
    assert selfcheck.self_check(registered(stand_in_plugin()), cpu) is None
    forward = selfcheck.self_check(registered(broken_plugin("forward")), cpu)
    assert forward.startswith("bias_act (2, 32, 16, 16) forward in float32: max error 0.1")
    backward = selfcheck.self_check(registered(broken_plugin("backward")), cpu)
    assert backward.startswith("bias_act (2, 32, 16, 16) backward in float32")


def test_a_build_that_fails_its_self_check_is_never_used_and_remembered(monkeypatch, tmp_path):
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path))
    monkeypatch.setattr(plugin.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(plugin, "check_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(build, "gpu_arch_tag", lambda archs=None: "sm00")
    monkeypatch.setattr(plugin, "_compile", lambda: registered(broken_plugin("forward")))
    plugin.reset_plugin_state()
    try:
        with pytest.warns(RuntimeWarning, match="self-check failed: bias_act"):
            assert plugin.load_plugin() is None
        verdict = selfcheck.read_verdict(build.build_dir())
        assert verdict["ok"] is False and "max error" in verdict["problem"]
        with pytest.raises(UserError, match="self-check failed"):
            plugin.plugin_for("cuda", None)
        # a later process finds the verdict beside the build and does not trust it either
        plugin.reset_plugin_state()
        monkeypatch.setattr(plugin, "_compile", lambda: registered(stand_in_plugin()))
        with pytest.warns(RuntimeWarning, match="self-check failed"):
            assert plugin.load_plugin() is None
        # a correct build passes and is used
        (build.build_dir() / selfcheck.VERDICT_FILE).unlink()
        plugin.reset_plugin_state()
        assert plugin.load_plugin() is not None
        assert selfcheck.read_verdict(build.build_dir())["ok"] is True
    finally:
        plugin.reset_plugin_state()


@pytest.mark.cuda
def test_the_real_build_passes_its_self_check():
    ops = plugin.load_plugin()
    assert ops is not None, plugin.plugin_status().error
    assert selfcheck.self_check(ops, torch.device("cuda")) is None
    assert selfcheck.read_verdict(build.build_dir())["ok"] is True


# -- finding the CUDA toolkit and building ahead ---------------------------------------------------

def fake_toolkit(root: Path, release: str) -> Path:
    """A folder with a bin/nvcc script that answers --version and --dryrun like nvcc."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    nvcc = bin_dir / "nvcc"
    nvcc.write_text("#!/bin/sh\n"
                    f'case "$1" in --version) echo "Cuda compilation tools, release {release},'
                    f' V{release}.1";;\n'
                    f'  --dryrun) echo "#\\$ _HERE_={bin_dir}" >&2;; esac\n')
    nvcc.chmod(0o755)
    return root


def test_the_toolkit_is_found_in_order_and_behind_wrappers(tmp_path, monkeypatch):
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    real = fake_toolkit(tmp_path / "cuda-13.0", "13.0")
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    wrapper = wrappers / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {real}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}:/usr/bin:/bin")
    monkeypatch.setattr(toolkit, "DEFAULT_HOME", tmp_path / "absent")
    found = toolkit.find_cuda_home()
    assert found.home == real.resolve() and found.version == "13.0"
    assert found.found_by.startswith("nvcc on PATH")
    other = fake_toolkit(tmp_path / "cuda-12.4", "12.4")
    monkeypatch.setenv("CUDA_PATH", str(other))
    assert toolkit.find_cuda_home().found_by == "CUDA_PATH"
    monkeypatch.setenv("CUDA_HOME", str(real))
    assert toolkit.find_cuda_home() == toolkit.Toolkit(real.resolve(), "CUDA_HOME", "13.0")


def test_a_toolkit_that_does_not_fit_torch_is_one_line(tmp_path):
    old = toolkit.Toolkit(tmp_path, "CUDA_HOME", "12.4")
    assert toolkit.toolkit_problem(old, "12.8") is None
    problem = toolkit.toolkit_problem(old, "13.0")
    assert problem == (f"the CUDA toolkit at {tmp_path} is 12.4, but torch is built for CUDA "
                       "13.0: install the CUDA 13 toolkit (and set CUDA_HOME to it), or a "
                       "torch build for CUDA 12")
    assert "install the CUDA 13 toolkit" in toolkit.toolkit_problem(None, "13.0")
    assert "CPU-only" in toolkit.toolkit_problem(old, "")


def test_building_ahead_targets_the_folder_gpu_nodes_look_in(tmp_path, monkeypatch):
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path))
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    built = []
    monkeypatch.setattr(build, "run_build", lambda directory, archs: built.append(
        (directory, archs)) or _library_in(directory, archs))
    folder = build.build_ahead("9.0, 8.0")
    assert built == [(folder, ("80", "90"))] and "-sm80_90-" in folder.name
    assert build.parse_arch_list("8.0;9.0a+PTX") == ("80", "90a+PTX")
    with pytest.raises(UserError, match="compute capabilities"):
        build.parse_arch_list("hopper")
    # a GPU node with an sm_90 GPU finds the build made ahead and loads it directly
    monkeypatch.setattr(build, "visible_archs", lambda: ("90",))
    made_ahead = folder / f"{build.extension_name(('80', '90'))}.so"
    assert build.build_dir() != folder and build.prebuilt_library() == made_ahead
    loaded = []
    monkeypatch.setattr(plugin, "_load_library", lambda path: loaded.append(path) or "ops")
    assert plugin._compile() == "ops" and loaded == [made_ahead]
    monkeypatch.setattr(build, "visible_archs", lambda: ("86",))
    assert build.prebuilt_library() is None


def _library_in(directory: Path, archs: tuple[str, ...]) -> Path:
    directory.mkdir(parents=True)
    library_file = directory / f"{build.extension_name(archs)}.so"
    library_file.write_bytes(b"")
    return library_file


def test_a_build_is_a_plain_library_named_after_its_namespace(tmp_path, monkeypatch):
    """build_ahead asks torch's JIT build for a plain shared library (no Python module) named
    after the build, which is also its operators' namespace (a valid identifier, unique per
    architectures and sources), for the architectures as TORCH_CUDA_ARCH_LIST spells them
    (and the variable as it was afterwards)."""
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "7.5")
    monkeypatch.setattr(build, "find_cuda_home",
                        lambda: toolkit.Toolkit(tmp_path, "CUDA_HOME", "13.0"))
    monkeypatch.setattr(build, "toolkit_problem", lambda found: None)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", cpp_extension.CUDA_HOME)  # set by the build
    calls = []

    def fake_load(**kwargs):
        calls.append((kwargs, os.environ["TORCH_CUDA_ARCH_LIST"]))
        return str(Path(kwargs["build_directory"]) / f"{kwargs['name']}.so")

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    folder = build.build_ahead("9.0a+PTX,8.0")
    ((kwargs, arch_list),) = calls
    assert arch_list == "8.0;9.0a+PTX" and os.environ["TORCH_CUDA_ARCH_LIST"] == "7.5"
    assert kwargs["is_python_module"] is False and kwargs["build_directory"] == str(folder)
    assert kwargs["name"] == f"fgnet_video_ops_sm80_90aptx_{build.source_hash()}"
    for arch_setting in ("8.6;9.0+PTX", "Hopper", ""):
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", arch_setting)
        assert re.fullmatch(r"[A-Za-z_]\w*", build.extension_name())


def test_building_ahead_with_a_cpu_torch_says_what_to_install():
    if torch.version.cuda:
        pytest.skip("a CUDA build of torch is installed")
    result = CliRunner().invoke(main, ["doctor", "--build", "--arch", "9.0"])
    assert result.exit_code == 1
    assert result.output.strip() == ("fgnet-video: error: building the kernels for 9.0 failed: "
                                     "this torch build has no CUDA (CPU-only): install a CUDA "
                                     "build of torch to build the kernels")
