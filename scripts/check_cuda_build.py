"""Build the compiled kernels ahead for GPU architectures and check the library without a GPU.

Needs a CUDA build of torch and a CUDA toolkit of the same major version, no GPU (and
fgnet_video importable: installed, or PYTHONPATH=. from the repository root):

    CUDA_HOME=/usr/local/cuda-13.0 python scripts/check_cuda_build.py --arch 9.0

(FGNET_VIDEO_HOME=$(mktemp -d) in front times a build from scratch; MAX_JOBS=1 one compile
at a time.) Steps, each printed:

1. build with `build.build_ahead` (torch's JIT build into the cache folder GPU nodes use) and
   print the seconds of each compile step from ninja's log;
2. load the .so as a GPU node does (`plugin._load_library`: torch.ops.load_library, then
   `library.define_ops`, where the dispatcher compares the kernels' C++ signatures with the
   schemas) and check that both operators have a CUDA kernel;
3. trace forward, backward and double backward of both operators with symbolic fake tensors
   (make_fx), which runs their fake implementations and autograd formulas as torch.compile
   does, and print the operator calls of the traced graph.

Exit status 0 when all of it holds; any failure raises.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from fgnet_video.kernels import build, plugin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="9.0", help="compute capabilities, e.g. 9.0,8.0")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    folder = build.build_ahead(args.arch)
    print(f"built in {time.perf_counter() - start:.1f} s: {folder}")
    for line in (folder / ".ninja_log").read_text().splitlines()[1:]:
        begin_ms, end_ms, _, target, _ = line.split("\t")
        print(f"  {target:<48} {(int(end_ms) - int(begin_ms)) / 1000:6.1f} s")

    library_file = folder / f"{build.extension_name(build.parse_arch_list(args.arch))}.so"
    ops = plugin._load_library(library_file)
    for name in ("bias_act", "upfirdn2d"):
        qualified = f"{ops.namespace}::{name}"
        if not torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CUDA"):
            raise SystemExit(f"{qualified} has no CUDA kernel")
        print(f"loaded {getattr(ops, name)._schema}  (CUDA kernel registered)")

    def step(x, bias, kernel):
        y = ops.upfirdn2d(ops.bias_act(x, bias, None, False, 0.2, 2**0.5), kernel, 2, 1, 2, 1, 2, 1)
        (grad,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        (grad2,) = torch.autograd.grad(grad.square().sum(), x)
        return y, grad, grad2

    graph = make_fx(step, tracing_mode="symbolic")(
        torch.empty(2, 8, 16, 16, requires_grad=True), torch.empty(8), torch.empty(4, 4))
    calls = [line.strip().split(";")[0] for line in graph.code.splitlines()
             if f"torch.ops.{ops.namespace}." in line]
    print(f"traced forward, backward and double backward: {len(calls)} operator calls")
    for call in calls:
        print(f"  {call}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
