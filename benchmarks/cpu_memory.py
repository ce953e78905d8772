"""Peak CPU memory of FG-Net inference per batch size: the figures behind the automatic CPU
batch size (`fgnet_video.inference.batch_size.cpu_batch_size`).

    python benchmarks/cpu_memory.py                    # full-size model, batches 1 and 2
    python benchmarks/cpu_memory.py --preset tiny --batches 1,4,16

Each batch size runs in a fresh process (peak resident memory only ever grows): load the
model (random weights of the preset), score one batch of blank faces in fp32, report the
peak RSS. The memory per face is the slope between the batch sizes; the fixed part is what
remains at batch 0. Prints the table and the per-face bytes for the full model's formula.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(preset_name: str, batch: int) -> dict:
    """In this process: peak RSS (bytes) after scoring `batch` blank faces."""
    import numpy as np
    import torch

    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.inference.engine import InferenceEngine
    from fgnet_video.model.config import preset
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.loaded import LoadedModel

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = random_model(preset(preset_name), seed=0)
    engine = InferenceEngine(LoadedModel(model, "bp4d", BP4D_AUS, {}), device="cpu",
                             precision="fp32", batch_size=batch)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = engine.image_size
    started = time.perf_counter()
    engine.predict(np.zeros((batch, size, size, 3), np.uint8))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"batch": batch, "loaded": loaded, "peak": peak, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.preset, args.child)))
        return 0
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        done = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--child",
                               str(batch)], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"FG-Net {args.preset}, fp32, CPU: peak resident memory per batch size")
    print("batch  after load (GiB)  peak (GiB)  forward (s)")
    for row in rows:
        print(f"{row['batch']:5d}  {row['loaded'] / 2**30:16.2f}  {row['peak'] / 2**30:10.2f}"
              f"  {row['seconds']:11.1f}")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        per_face = (last["peak"] - first["peak"]) / (last["batch"] - first["batch"])
        print(f"per face: {per_face / 2**20:.0f} MiB; fixed: "
              f"{(first['peak'] - per_face * first['batch']) / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
