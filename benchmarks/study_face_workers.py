"""A study of many short recordings with `--face-workers 1` against N: the detection processes
start once per study (the face stage is reused across recordings), so N workers must not be
slower than one even on clips of a few seconds.

    python benchmarks/study_face_workers.py --clips 20 --workers 2 [--rounds 2]

The clips are copies of the ../shared/media recordings under 5 s (talking head, webcam, lab
recording), cycled to --clips inputs, analysed whole with dlib's HOG detector (face workers
run HOG; the CNN's detections are batched on the device instead) and random tiny weights
(the model is not what is measured) as one study (`analyze_inputs`, --jobs 1), once per
worker count and round, in this process, after an untimed one-clip study (what a process
pays once); the rounds alternate the order (1, N, then N, 1) so that neither pays for
going first. Every run's tables are compared with the first's. Prints the machine's load,
wall seconds (mean and each round), rows/s and the ratio to one worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHORT_CLIPS = ("vox_talking.mp4", "webcam_lamp.wmv", "sample_disfa.avi")


def make_study(folder: Path, clips: int) -> Path:
    inputs = folder / "inputs"
    inputs.mkdir(parents=True)
    for k in range(clips):
        name = SHORT_CLIPS[k % len(SHORT_CLIPS)]
        shutil.copy(SHARED / "media" / name, inputs / f"clip{k:02d}{Path(name).suffix}")
    return inputs


def run(inputs: Path, out: Path, weights: Path, workers: int) -> tuple[float, int]:
    """(wall seconds, frames) of the study with `workers` face workers."""
    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.study.run import analyze_inputs

    options = AnalyzeOptions.from_kwargs(weights=str(weights), face_workers=workers,
                                         device="cpu", detector="hog")
    started = time.perf_counter()
    summary = analyze_inputs([str(inputs)], options, out_dir=out)
    seconds = time.perf_counter() - started
    if summary.failed:
        raise SystemExit(f"failed: {summary.failed}")
    frames = sum(1 for table in out.glob("*.csv") for _ in table.open()) - len(summary.done)
    return seconds, frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="the worker count against 1")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed runs of each configuration, the order alternating")
    args = parser.parse_args()
    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = make_study(folder, args.clips)
        weights = save_converted(folder / "tiny.safetensors", random_model(TINY, seed=0),
                                 "bp4d", BP4D_AUS)
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the start")
        # untimed: what the first study in a process pays once (imports, the 68-point model
        # read from disk) would otherwise count against the first configuration
        warm = folder / "warm"
        warm.mkdir()
        shutil.copy(next(inputs.iterdir()), warm)
        run(warm, folder / "warm_out", weights, 1)
        # rounds alternate the order (1, N, then N, 1, ...) so neither pays for going first
        counts = (1, args.workers)
        walls: dict[int, list[float]] = {1: [], args.workers: []}
        tables, same, frames = None, True, 0
        for round_ in range(args.rounds):
            for workers in counts if round_ % 2 == 0 else counts[::-1]:
                out = folder / f"out{workers}_{round_}"
                seconds, frames = run(inputs, out, weights, workers)
                found = {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}
                same = same and (tables is None or found == tables)
                tables = tables or found
                walls[workers].append(seconds)
        print(f"load {os.getloadavg()[0]:.2f} at the end; {args.clips} clips, {frames} rows, "
              f"{args.rounds} rounds (wall: mean of the rounds)")
        print("| face workers | wall s (each round) | rows/s | vs 1 | tables identical |")
        print("|---|---|---|---|---|")
        base = sum(walls[1]) / len(walls[1])
        for workers in counts:
            mean = sum(walls[workers]) / len(walls[workers])
            each = ", ".join(f"{w:.1f}" for w in walls[workers])
            print(f"| {workers} | {mean:.1f} ({each}) | {frames / mean:.1f} | "
                  f"{base / mean:.2f}x | {'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
