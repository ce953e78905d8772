"""Compiled vs reference StyleGAN2 ops at FG-Net's generator shapes.

For every generator resolution r (8 .. 1024, widths 512, 512, 512, 512, 256, 128, 64, 32):
  blur    upfirdn2d of the transposed-conv output (B, C, r+1, r+1), 4x4 kernel, pad (1, 1)
  rgb-up  upfirdn2d of the RGB skip (B, 3, r/2, r/2), up 2, pad (2, 1)
  lrelu   fused bias + leaky ReLU of a styled conv output (B, C, r, r)
each forward and forward+backward. Prints milliseconds (median of --repeats, CUDA events on
a GPU), the speedup of the compiled op (impl="cuda") over the reference (impl="ref") measured
in the same run, and the achieved bandwidth: the bytes an ideal implementation must read and
write, over the time. FGNET_VIDEO_KERNELS does not change what is measured.

    python benchmarks/kernels.py                      # CUDA if available, batch 16
    python benchmarks/kernels.py --dtype bf16 --max-resolution 256
    python benchmarks/kernels.py --device cpu         # reference only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fgnet_video.kernels import fused_leaky_relu, load_plugin, plugin_status, upfirdn2d

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
WIDTHS = (512, 512, 512, 512, 256, 128, 64, 32)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def blur_kernel(device: torch.device) -> torch.Tensor:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum() * 4


@dataclass
class Case:
    """One op at one shape: `run(op_variant, backward)` and its ideal traffic in bytes."""

    name: str
    shape: tuple[int, ...]
    run: Callable[[bool, bool], None]  # (compiled: impl "cuda", else "ref"; backward)
    bytes_forward: int
    bytes_backward: int


def make_cases(batch: int, max_res: int, dtype: torch.dtype, device: torch.device) -> list[Case]:
    size = torch.empty((), dtype=dtype).element_size()
    kernel = blur_kernel(device)
    cases = []
    for res, width in zip(RESOLUTIONS, WIDTHS, strict=True):
        if res > max_res:
            break
        specs = [
            ("blur", (batch, width, res + 1, res + 1), (batch, width, res, res),
             dict(kernel=kernel, up=1, pad=(1, 1))),
            ("rgb-up", (batch, 3, res // 2, res // 2), (batch, 3, res, res),
             dict(kernel=kernel, up=2, pad=(2, 1))),
        ]
        for name, in_shape, out_shape, kwargs in specs:
            cases.append(_upfirdn_case(name, in_shape, out_shape, kwargs, dtype, device, size))
        cases.append(_lrelu_case((batch, width, res, res), dtype, device, size))
    return cases


def _numel(shape: tuple[int, ...]) -> int:
    return int(torch.Size(shape).numel())


def _upfirdn_case(name, in_shape, out_shape, kwargs, dtype, device, size) -> Case:
    x = torch.randn(in_shape, device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(out_shape, device=device, dtype=dtype)

    def run(compiled: bool, backward: bool) -> None:
        with torch.set_grad_enabled(backward):
            y = upfirdn2d(x, **kwargs, impl="cuda" if compiled else "ref")
            if backward:
                torch.autograd.grad(y, x, dy)

    traffic = (_numel(in_shape) + _numel(out_shape)) * size  # read x, write y (and reverse)
    return Case(name, in_shape, run, traffic, traffic)


def _lrelu_case(shape, dtype, device, size) -> Case:
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    bias = torch.randn(shape[1], device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(shape, device=device, dtype=dtype)

    def run(compiled: bool, backward: bool) -> None:
        with torch.set_grad_enabled(backward):
            y = fused_leaky_relu(x, bias, impl="cuda" if compiled else "ref")
            if backward:
                torch.autograd.grad(y, (x, bias), dy)

    n = _numel(shape) * size
    # forward: read x, write y; backward: read dy and y, write dx, read dx for the bias sum
    return Case("lrelu", shape, run, 2 * n, 4 * n)


def time_ms(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median milliseconds of fn() after two warm-up calls (CUDA events on a GPU)."""
    for _ in range(2):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - begin) * 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-resolution", type=int, default=None,
                        help="largest generator resolution (default 1024 on CUDA, 128 on CPU)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per measurement (default 20 on CUDA, 3 on CPU)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    max_res = args.max_resolution or (1024 if on_gpu else 128)
    repeats = args.repeats or (20 if on_gpu else 3)
    dtype = DTYPES[args.dtype]

    compare = on_gpu and load_plugin() is not None
    print(f"device {device}  dtype {args.dtype}  batch {args.batch}  torch {torch.__version__}")
    if on_gpu:
        print(f"gpu {torch.cuda.get_device_name(device)}")
    if not compare:
        status = plugin_status()
        reason = ("the compiled path needs CUDA" if not on_gpu
                  else f"compiled kernels unavailable ({status.error or status.state})")
        print(f"reference only: {reason}")

    header = f"{'op':<7} {'shape':<22} {'pass':<8} {'ref ms':>9} {'ref GB/s':>9}"
    if compare:
        header += f" {'ours ms':>9} {'ours GB/s':>9} {'speedup':>8}"
    print(header)
    print("-" * len(header))
    speedups = []
    for case in make_cases(args.batch, max_res, dtype, device):
        for backward in (False, True):
            traffic = case.bytes_forward + (case.bytes_backward if backward else 0)
            ref_ms = time_ms(lambda c=case, b=backward: c.run(False, b), device, repeats)
            shape = "x".join(map(str, case.shape))
            line = (f"{case.name:<7} {shape:<22} {'fwd+bwd' if backward else 'fwd':<8} "
                    f"{ref_ms:9.3f} {traffic / ref_ms / 1e6:9.1f}")
            if compare:
                ours_ms = time_ms(lambda c=case, b=backward: c.run(True, b), device, repeats)
                speedups.append(ref_ms / ours_ms)
                line += f" {ours_ms:9.3f} {traffic / ours_ms / 1e6:9.1f} {ref_ms / ours_ms:7.2f}x"
            print(line, flush=True)
        if on_gpu:
            torch.cuda.empty_cache()
    if speedups:
        print(f"geometric-mean speedup {statistics.geometric_mean(speedups):.2f}x "
              f"over {len(speedups)} measurements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
