"""A study of many short recordings with `--face-workers 1` against N: the detection processes
start once per study (the face stage is reused across recordings), so N workers must not be
slower than one even on clips of a few seconds.

    python benchmarks/study_face_workers.py --clips 20 --workers 2

The clips are copies of the ../shared/media recordings under 5 s (talking head, webcam, lab
recording), cycled to --clips inputs, analysed whole with dlib's HOG detector (face workers
run HOG; the CNN's detections are batched on the device instead) and random tiny weights
(the model is not what is measured) as one study (`analyze_inputs`, --jobs 1), once per
worker count, in this process; every run's tables are compared with the first's. Prints the
machine's load, wall seconds, frames/s and the ratio to one worker.
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
        rows, tables = [], None
        for workers in (1, args.workers):
            out = folder / f"out{workers}"
            seconds, frames = run(inputs, out, weights, workers)
            found = {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}
            same = tables is None or found == tables
            tables = tables or found
            rows.append((workers, seconds, frames, same))
        print(f"load {os.getloadavg()[0]:.2f} at the end; {args.clips} clips, "
              f"{rows[0][2]} rows")
        print("| face workers | wall s | rows/s | vs 1 | tables as with 1 |")
        print("|---|---|---|---|---|")
        for workers, seconds, frames, same in rows:
            print(f"| {workers} | {seconds:.1f} | {frames / seconds:.1f} | "
                  f"{rows[0][1] / seconds:.2f}x | {'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
