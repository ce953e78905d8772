"""How the face stage of one recording scales with `--face-workers`, model left out.

    python benchmarks/face_stage_scaling.py                 # 720p clip + ../shared/media
    python benchmarks/face_stage_scaling.py --frames 300 --workers 1,2,4

Clips: a 1280x720 H.264 clip made from the sample video (one face, plus the name badge HOG
takes for a face; looped forward and backward to --frames), and the real clips in
../shared/media.

1. CPU ms per frame of each stage with one worker (the stages timed one after another on the
   decoded frames): decode, detect (the tracker's detector calls), landmarks (the rest of
   tracking: landmark fits and checks), persons (face descriptors), align (the 256 px
   crops), and hand-off (a frame pickled and unpickled, as it goes to a detection worker).
2. frames/s of `analyze_stream` with the face stage of 1, 2, ... workers and a no-op scorer
   in place of the model (so the face stage and decoding are what is measured), each in
   the same run, and the ratio to one worker. The tables of every worker count are checked
   identical to one worker's (face ids, boxes, landmarks-derived crops).

The machine and its load are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from multi_face import parse_setting  # benchmarks/ is this script's folder

from fgnet_video.analysis.stream import analyze_stream
from fgnet_video.aus import BP4D_AUS
from fgnet_video.face.pipeline import FacePipeline, align_tracked
from fgnet_video.media.video import VideoReader, read_frames
from fgnet_video.options import FaceSettings

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


class NoOpScorer:
    """Stands in for the InferenceEngine: zero scores, no work."""

    batch_size = 16
    aus = BP4D_AUS

    def predict(self, images, keep_heatmaps: bool = False):
        from fgnet_video.inference.engine import Prediction

        return Prediction(np.zeros((len(images), len(BP4D_AUS)), np.float32))


def make_720p_clip(path: Path, frames: int) -> Path:
    import av
    import cv2

    images = [cv2.resize(f.image, (1280, 720), interpolation=cv2.INTER_CUBIC)
              for f in read_frames(REPO / "sample_videos" / "astronaut.mp4")]
    cycle = images + images[-2:0:-1]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(cycle[i % len(cycle)], format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


class TimedDetector:
    """The tracker's detector with the CPU seconds of its detections counted: whole frames
    and the CNN's regions (`in_region`); its other attributes (`small_face_side`,
    `local_redetection`) are the detector's, so the tracker uses it as it is."""

    def __init__(self, detector) -> None:
        self.detector, self.seconds = detector, 0.0

    def __getattr__(self, name: str):
        return getattr(self.detector, name)

    def __call__(self, image, small_faces=True):
        return self._timed(self.detector, image, small_faces=small_faces)

    def in_region(self, image, region, small_faces=True):
        return self._timed(self.detector.in_region, image, region, small_faces)

    def _timed(self, detect, *args, **kwargs):
        begin = time.process_time()
        try:
            return detect(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - begin


def stage_costs(path: Path, settings: FaceSettings) -> dict[str, float]:
    """CPU ms per frame of each stage, one worker (see the module docstring)."""
    started = time.process_time()
    frames = list(read_frames(path))
    costs = {"decode": time.process_time() - started}
    pipeline = FacePipeline(settings)
    detector = TimedDetector(pipeline.tracker.detector)
    pipeline.tracker.detector = detector
    tracked, tracking, persons = [], 0.0, 0.0
    for frame in frames:  # as `FacePipeline.locate`: the tracker resumes lost tracks by
        started = time.process_time()  # the person ids of the frames before
        tracked.append(pipeline.track(frame))
        between = time.process_time()
        pipeline.persons.update(frame.image, tracked[-1])
        tracking += between - started
        persons += time.process_time() - between
    costs["detect"] = detector.seconds
    costs["landmarks"] = tracking - detector.seconds
    costs["persons"] = persons
    started = time.process_time()
    for frame, faces in zip(frames, tracked, strict=True):
        for face in faces:
            align_tracked(frame, face, settings.aligned_size, settings.align_method)
    costs["align"] = time.process_time() - started
    started = time.process_time()
    for frame in frames:
        pickle.loads(pickle.dumps(frame.image, protocol=pickle.HIGHEST_PROTOCOL))
    costs["hand-off"] = time.process_time() - started
    return {name: 1e3 * seconds / len(frames) for name, seconds in costs.items()}


def frames_per_second(path: Path, settings: FaceSettings, workers: int
                      ) -> tuple[float, list[tuple]]:
    """analyze_stream's frames/s with a no-op scorer, and what it found (for comparison)."""
    from fgnet_video.face.parallel import ParallelFacePipeline

    stage = FacePipeline(settings) if workers == 1 else ParallelFacePipeline(settings, workers)
    found: list[tuple] = []

    def keep(scored) -> None:
        for item in scored:
            found.extend((item.frame.index, f.face_id, tuple(np.round(f.box, 3)),
                          float(np.abs(f.aligned.astype(np.int64)).sum())) for f in item.faces)

    with VideoReader(path) as reader:
        stats = analyze_stream(reader, NoOpScorer(), stage, keep)
    return stats.frames / stats.wall_seconds, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", help="default: a 720p clip + ../shared/media")
    parser.add_argument("--frames", type=int, default=200, help="frames of the 720p clip")
    parser.add_argument("--workers", default="1,2", help="face worker counts to compare")
    parser.add_argument("--setting", default="", help="FaceSettings changes, name=value,... "
                        "(as in multi_face.py)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    settings = parse_setting(args.setting)
    folder = Path(tempfile.mkdtemp(prefix="face_scaling_"))
    videos = [Path(v) for v in args.videos] or [
        make_720p_clip(folder / "astronaut_720p.mp4", args.frames),
        *sorted(p for p in MEDIA.glob("*") if p.suffix in (".mp4", ".avi", ".wmv", ".mov"))]
    print(f"machine: {platform.processor() or 'cpu'}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f} at the start")
    print("\n| clip | decode | detect | landmarks | persons | align | hand-off | total "
          "(CPU ms/frame, 1 worker) |")
    print("|---|---|---|---|---|---|---|---|")
    for video in videos:
        costs = stage_costs(video, settings)
        cells = " | ".join(f"{costs[k]:.1f}" for k in ("decode", "detect", "landmarks",
                                                       "persons", "align", "hand-off"))
        print(f"| {video.name} | {cells} | {sum(costs.values()) - costs['hand-off']:.1f} |",
              flush=True)
    print("\n| clip | " + " | ".join(f"{n} worker{'s' * (n > 1)} (frames/s)" for n in counts)
          + " | " + " | ".join(f"{n} vs 1" for n in counts[1:]) + " | identical |")
    print("|---|" + "---|" * (2 * len(counts)))
    for video in videos:
        speeds, results = [], []
        for n in counts:
            speed, found = frames_per_second(video, settings, n)
            speeds.append(speed)
            results.append(found)
        same = all(r == results[0] for r in results[1:])
        print(f"| {video.name} | " + " | ".join(f"{s:.1f}" for s in speeds) + " | "
              + " | ".join(f"{s / speeds[0]:.2f}x" for s in speeds[1:])
              + f" | {'yes' if same else 'NO'} |", flush=True)
    print(f"\nload {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
