"""`analyze --jobs N`: the face networks (CNN detections, descriptors) of the N worker
processes run by the main process, batched across recordings on the model's device
(`fgnet_video.study.face_server`), against each worker running its own.

    python benchmarks/study_shared_faces.py [--jobs 2] [--fps 2] [--rounds 2] [--detector cnn]

The clips are the real multi-person recordings stored in benchmarks/real_footage (3-9 s,
480x270 to 1280x720), analysed at --fps frames per second with `--detector` (cnn; with hog
only the descriptors go to the main process) and random tiny weights (the model is not what
is measured) as one study (`analyze_inputs`), once per configuration and round, in this
process, after an untimed one-clip study; the rounds alternate the order. The tables of
every run are compared with the first's: the same rows, faces and ids, and numbers within
2e-6 (a detection depends on its frame alone, but the CNN's confidences on a CPU change in
the last printed digit with the torch thread count: one per worker, all the cores in the
main process). Prints the machine's load, wall seconds (mean and each round), rows/s and
the ratio to the workers' own networks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

CLIPS = Path(__file__).resolve().parent / "real_footage"


def run(inputs: list[str], out: Path, weights: Path, jobs: int, fps: float, shared: bool,
        detector: str) -> tuple[float, int]:
    """(wall seconds, rows) of the study, the face networks in the main process or not."""
    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.study import local_workers
    from fgnet_video.study.run import analyze_inputs

    local_workers.SHARED_FACE_NETWORKS = shared  # read by run_parallel
    options = AnalyzeOptions.from_kwargs(weights=str(weights), jobs=jobs, fps=fps,
                                         device="cpu", detector=detector)
    started = time.perf_counter()
    summary = analyze_inputs(inputs, options, out_dir=out)
    seconds = time.perf_counter() - started
    if summary.failed:
        raise SystemExit(f"failed: {summary.failed}")
    rows = sum(1 for table in out.glob("*.csv") for _ in table.open()) - len(summary.done)
    return seconds, rows


def alike(found: dict[str, pd.DataFrame], first: dict[str, pd.DataFrame]) -> bool:
    """The same tables, numbers within 2e-6 (module docstring)."""
    if found.keys() != first.keys():
        return False
    try:
        for name, table in found.items():
            pd.testing.assert_frame_equal(table, first[name], check_exact=False, atol=2e-6)
    except AssertionError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--detector", choices=("cnn", "hog"), default="cnn")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed runs of each configuration, the order alternating")
    args = parser.parse_args()
    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    inputs = sorted(str(p) for p in CLIPS.glob("*.mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = save_converted(folder / "tiny.safetensors", random_model(TINY, seed=0),
                                 "bp4d", BP4D_AUS)
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the start")
        run(inputs[:1], folder / "warm", weights, args.jobs, 0.5, True, args.detector)  # untimed
        configurations = (False, True)
        walls: dict[bool, list[float]] = {False: [], True: []}
        tables, same, rows = None, True, 0
        for round_ in range(args.rounds):
            for shared in configurations if round_ % 2 == 0 else configurations[::-1]:
                out = folder / f"out{int(shared)}_{round_}"
                seconds, rows = run(inputs, out, weights, args.jobs, args.fps, shared,
                                    args.detector)
                found = {p.name: pd.read_csv(p) for p in sorted(out.glob("*.csv"))}
                same = same and (tables is None or alike(found, tables))
                tables = tables if tables is not None else found
                walls[shared].append(seconds)
        print(f"load {os.getloadavg()[0]:.2f} at the end; {len(inputs)} clips at {args.fps} "
              f"fps, --jobs {args.jobs}, --detector {args.detector}, {rows} rows, "
              f"{args.rounds} rounds")
        print("| face networks | wall s (each round) | rows/s | vs own | same tables (2e-6) |")
        print("|---|---|---|---|---|")
        base = sum(walls[False]) / len(walls[False])
        for shared in configurations:
            mean = sum(walls[shared]) / len(walls[shared])
            each = ", ".join(f"{w:.1f}" for w in walls[shared])
            name = "main process (shared)" if shared else "each worker's own"
            print(f"| {name} | {mean:.1f} ({each}) | {rows / mean:.1f} | {base / mean:.2f}x "
                  f"| {'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
