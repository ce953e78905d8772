"""A study on one model: faces/s of `analyze --jobs N` against `--jobs 1`, same engine.

    python benchmarks/study_throughput.py                      # ../shared/media, tiny weights
    python benchmarks/study_throughput.py --jobs 1,2 --copies 2 --fps 5
    python benchmarks/study_throughput.py a.mp4 b.mp4 --tracks tracks/ -w model.pth \
        --psp encoder.pt --device cuda --jobs 1,4          # the GPU check's study step

The model is loaded once (`InferenceEngine.from_weights`), then the same study (the inputs,
each linked `--copies` times under its own name, and with `--tracks` its saved face tracks
beside it) is run with each `--jobs` value into its own folder: `run_sequential` for 1,
`run_parallel` (N worker processes feeding this one engine, `fgnet_video.study.local_workers`)
otherwise. Only the runs are timed (not the model load); each prints its wall seconds,
frames and faces per second and the ratio to `--jobs 1`, and every table is checked equal
to the `--jobs 1` table of its recording. The machine and its load are printed with the
figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from fgnet_video.inference.engine import InferenceEngine
from fgnet_video.options import TRACKS_SUFFIX, AnalyzeOptions
from fgnet_video.study.jobs import run_sequential
from fgnet_video.study.local_workers import run_parallel
from fgnet_video.study.plan import plan_jobs

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
DEFAULT_CLIPS = ("vox_talking.mp4", "webcam_lamp.wmv", "phone_cut_vfr.mov", "sample_disfa.avi")


def study_folder(inputs: list[Path], copies: int, tracks: Path | None, folder: Path) -> Path:
    """`folder` with each input linked once in each of `copies` subfolders (cK/NAME.ext: the
    output names differ, the file names stay those the tracks were saved from) and, with
    `tracks`, its saved tracks beside it, where a tracks folder is looked up."""
    for copy in range(copies):
        (folder / f"c{copy}").mkdir(parents=True)
        for source in inputs:
            (folder / f"c{copy}" / source.name).symlink_to(source.resolve())
            if tracks is not None:
                (folder / f"c{copy}" / f"{source.stem}{TRACKS_SUFFIX}").symlink_to(
                    (tracks / f"{source.stem}{TRACKS_SUFFIX}").resolve())
    return folder


def run_study(engine: InferenceEngine, study: Path, out: Path, options: AnalyzeOptions,
              jobs: int) -> tuple[float, int, int]:
    """(wall seconds, frames, faces) of the study run with `jobs` on `engine`."""
    plan = plan_jobs([str(study)], options, out_dir=out)
    outcomes: list = []

    def on_end(job, outcome) -> None:
        outcomes.append(outcome)

    started = time.perf_counter()
    if jobs == 1:
        summary = run_sequential(plan, engine, lambda job: lambda frames, faces: None, on_end)
    else:
        summary = run_parallel(plan, engine, jobs, on_end)
    seconds = time.perf_counter() - started
    if summary.failed:
        raise SystemExit(f"failed: {summary.failed}")
    return (seconds, sum(o.stats["frames"] for o in outcomes),
            sum(o.stats["faces"] for o in outcomes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", help="default: the clips of ../shared/media")
    parser.add_argument("--jobs", default="1,2", help="--jobs values to compare (1 first)")
    parser.add_argument("--copies", type=int, default=1, help="links of each input")
    parser.add_argument("--tracks", default=None, help="folder of NAME.tracks.npz to replay")
    parser.add_argument("-w", "--weights", default=None, help="default: random tiny weights")
    parser.add_argument("--psp", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--fps", type=float, default=None, help="analyse this many frames/s")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.jobs.split(",")]
    if counts[0] != 1:
        parser.error("--jobs must start with 1 (the baseline)")
    videos = [Path(v) for v in args.videos] or [MEDIA / name for name in DEFAULT_CLIPS]
    work = Path(tempfile.mkdtemp(prefix="study_throughput_"))
    weights = args.weights
    if weights is None:
        from fgnet_video.aus import BP4D_AUS
        from fgnet_video.model.config import TINY
        from fgnet_video.model.init import random_model
        from fgnet_video.weights.checkpoints import save_converted

        weights = str(work / "tiny.safetensors")
        save_converted(weights, random_model(TINY, seed=0), "bp4d", BP4D_AUS)
    study = study_folder(videos, args.copies, Path(args.tracks) if args.tracks else None,
                         work / "study")
    model = {"weights": weights, "psp": args.psp, "device": args.device,
             "precision": args.precision, "batch_size": args.batch_size}
    engine = InferenceEngine.from_weights(**AnalyzeOptions.from_kwargs(
        **model).model.engine_kwargs())
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f} at the start; model on {engine.device}, "
          f"{str(engine.dtype).replace('torch.', '')}, batch {engine.batch_size}; "
          f"{len(videos)} inputs x {args.copies} copies"
          f"{', tracks replayed' if args.tracks else ''}")
    print("| --jobs | seconds | frames/s | faces/s | ratio to --jobs 1 |")
    print("| --- | --- | --- | --- | --- |")
    baseline, compared = None, 0
    for jobs in counts:
        options = AnalyzeOptions.from_kwargs(
            **model, jobs=jobs, overwrite=True, fps=args.fps,
            tracks=str(study) if args.tracks else None)
        seconds, frames, faces = run_study(engine, study, work / f"jobs{jobs}", options, jobs)
        baseline = baseline or faces / seconds
        print(f"| {jobs} | {seconds:.1f} | {frames / seconds:.1f} | {faces / seconds:.1f} | "
              f"{faces / seconds / baseline:.2f}x |", flush=True)
        if jobs != 1:
            for table in sorted((work / "jobs1").rglob("*.csv")):
                other = work / f"jobs{jobs}" / table.relative_to(work / "jobs1")
                pd.testing.assert_frame_equal(pd.read_csv(table), pd.read_csv(other),
                                              check_exact=False, atol=2e-6)
                compared += 1
    print(f"load {os.getloadavg()[0]:.2f} at the end; {compared} tables equal to --jobs 1's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
