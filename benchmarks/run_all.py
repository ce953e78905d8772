"""Every model-speed benchmark in one command: the StyleGAN2 ops (benchmarks/kernels.py, fp32,
and bf16 on CUDA), then FG-Net inference mode by mode (benchmarks/model_speed.py).

    python benchmarks/run_all.py                               # CUDA when present
    python benchmarks/run_all.py --device cpu --preset tiny --threads 1
    python benchmarks/run_all.py --weights bp4d.safetensors    # options go to model_speed.py

Each part prints its own table; the exit status is non-zero when a part failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from fgnet_video.inference.devices import resolve_device

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args, model_args = parser.parse_known_args(argv)
    device = resolve_device(args.device)
    parts = [("StyleGAN2 ops, fp32", [HERE / "kernels.py", "--device", str(device)])]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        parts.append(("StyleGAN2 ops, bf16",
                      [HERE / "kernels.py", "--device", str(device), "--dtype", "bf16"]))
    parts.append(("FG-Net inference modes",
                  [HERE / "model_speed.py", "--device", str(device), *model_args]))
    status = 0
    for title, command in parts:
        print(f"\n== {title} ==", flush=True)
        status = max(status, subprocess.run([sys.executable, *map(str, command)]).returncode)
    return status


if __name__ == "__main__":
    sys.exit(main())
