"""What a study costs on Ray (`analyze --out-dir DIR --ray`) against the same study run
locally, on one machine.

    python benchmarks/ray_overhead.py                    # 4 clips, every frame, 2 Ray CPUs
    python benchmarks/ray_overhead.py --clips 8 --fps 5 --cpus 4

The study is `--clips` copies of sample_videos/astronaut.mp4 (4 s, 640x360, one face),
scored by random tiny weights. In the same command, each timed on its own:

1. local: `analyze_inputs` without Ray, one recording after another on one model, the model
   load included, as `fgnet-video analyze` runs it: with torch's default threads, then with
   one thread (as each Ray task below has);
2. Ray start: `ray.init` of a local cluster of `--cpus` CPUs (the one-time cost of a bare
   `--ray` on a machine without a running cluster);
3. Ray, first run: the study as Ray tasks (one CPU and one torch thread each, `--cpus` at
   once); each worker process starts, imports fgnet-video and loads the model;
4. Ray, again: the same study with --overwrite on the now warm workers (their model loaded).

Each Ray run's tables are checked identical to the local run's. The machine and its load
are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_study(folder: Path, clips: int) -> tuple[list[str], Path]:
    """`clips` copies of the sample video and random tiny weights, in `folder`."""
    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    inputs = []
    for k in range(clips):
        inputs.append(str(shutil.copy(REPO / "sample_videos" / "astronaut.mp4",
                                      folder / f"clip{k}.mp4")))
    weights = folder / "tiny.safetensors"
    save_converted(weights, random_model(TINY, seed=0), "bp4d", BP4D_AUS)
    return inputs, weights


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def same_tables(out: Path, reference: Path) -> bool:
    tables = sorted(reference.glob("*.csv"))
    return bool(tables) and all((out / t.name).read_bytes() == t.read_bytes() for t in tables)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--fps", type=float, default=0.0, help="sampling (0: every frame)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    args = parser.parse_args(argv)

    import ray
    import torch

    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.study.run import analyze_inputs

    folder = Path(tempfile.mkdtemp(prefix="ray_overhead_"))
    inputs, weights = make_study(folder, args.clips)
    settings = {"weights": str(weights), **({"fps": args.fps} if args.fps else {})}
    print(f"machine: {platform.processor() or 'cpu'}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f} at the start; ray {ray.__version__}; {args.clips} clips "
          f"of 4 s (640x360, 1 face), {'every frame' if not args.fps else f'{args.fps:g} fps'}"
          f", tiny random weights")

    threads = torch.get_num_threads()
    local, _ = timed(lambda: analyze_inputs(inputs, AnalyzeOptions.from_kwargs(**settings),
                                            out_dir=folder / "local"))
    torch.set_num_threads(1)
    local_one, _ = timed(lambda: analyze_inputs(inputs, AnalyzeOptions.from_kwargs(
        **settings, overwrite=True), out_dir=folder / "local"))
    torch.set_num_threads(threads)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)  # the workers import it
    start, _ = timed(lambda: ray.init(num_cpus=args.cpus, include_dashboard=False,
                                      object_store_memory=200 * 2**20, log_to_driver=False))
    rows = [(f"local, one after another ({threads} torch threads)", local, ""),
            ("local, one after another (1 torch thread)", local_one, "")]
    rows.append((f"Ray start (`ray.init`, local cluster of {args.cpus} CPUs)", start, ""))
    for label, overwrite in (("Ray, first run (workers start, load the model)", False),
                             ("Ray, again (--overwrite, warm workers)", True)):
        options = AnalyzeOptions.from_kwargs(**settings, ray="", overwrite=overwrite)
        seconds, summary = timed(lambda o=options: analyze_inputs(inputs, o,
                                                                  out_dir=folder / "ray"))
        assert len(summary.done) == args.clips, summary
        identical = "yes" if same_tables(folder / "ray", folder / "local") else "NO"
        rows.append((label, seconds, identical))
    ray.shutdown()

    print("\n| run | seconds | vs local | tables identical to local |")
    print("|---|---|---|---|")
    for label, seconds, identical in rows:
        ratio = "" if label.startswith("Ray start") else f"{seconds / local:.2f}x"
        print(f"| {label} | {seconds:.1f} | {ratio} | {identical} |")
    print(f"\nload {os.getloadavg()[0]:.2f} at the end")
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
