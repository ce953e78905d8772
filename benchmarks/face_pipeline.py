"""CPU cost per frame of the face stage, against the naive per-frame recipe, same command.

    python benchmarks/face_pipeline.py [VIDEO ...] [--repeat 3]

Both sides decode the video with VideoReader and produce 256x256 aligned faces:

- pipeline: FacePipeline with default settings (HOG on a downscaled copy every 10 frames,
  landmark tracking in between, fast alignment);
- naive: dlib HOG with upsample 1 on every full frame, 68 landmarks per face, the exact
  (PIL, 1024 transform) FFHQ alignment.

Prints ms/frame (best of --repeat runs), the speed-up and the share of frames with a face.
Model loading is outside the timings. Defaults to the two videos in ../shared/media.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fgnet_video.face.align import ffhq_align
from fgnet_video.face.detect import FaceDetector
from fgnet_video.face.landmarks import LandmarkPredictor
from fgnet_video.face.pipeline import FacePipeline, FaceSettings
from fgnet_video.media.video import Frame, VideoReader

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


class NaiveRecipe:
    """Per-frame detection (HOG, upsample 1, full frame) + landmarks + exact alignment."""

    def __init__(self, predictor: LandmarkPredictor) -> None:
        self.detector = FaceDetector("hog", downscale=1.0, upsample=1, min_face_size=1)
        self.predictor = predictor

    def __call__(self, image: np.ndarray) -> int:
        faces = 0
        for detection in self.detector(image):
            landmarks = self.predictor(image, detection.box)
            ffhq_align(image, landmarks, size=256, method="exact")
            faces += 1
        return faces


def run(path: Path, per_frame: Callable[[Frame], int], reset: Callable[[], None],
        repeat: int) -> tuple[float, float]:
    """(best ms per frame over `repeat` passes, share of frames with at least one face)."""
    best, share = float("inf"), 0.0
    for _ in range(repeat):
        reset()
        frames = with_face = 0
        start = time.perf_counter()
        with VideoReader(path) as reader:
            for frame in reader:
                frames += 1
                with_face += per_frame(frame) > 0
        best = min(best, (time.perf_counter() - start) * 1000 / max(frames, 1))
        share = with_face / max(frames, 1)
    return best, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path,
                        default=[MEDIA / "vox_talking.mp4", MEDIA / "sample_disfa.avi"])
    parser.add_argument("--repeat", type=int, default=2, help="passes per method (best kept)")
    args = parser.parse_args()

    predictor = LandmarkPredictor()
    pipeline = FacePipeline(FaceSettings(), predictor=predictor)
    naive = NaiveRecipe(predictor)

    print(f"{'video':<20} {'method':<9} {'ms/frame':>9} {'speed-up':>9} {'with face':>10}")
    for path in args.videos:
        naive_ms, naive_share = run(path, lambda frame: naive(frame.image), lambda: None,
                                    args.repeat)
        fast_ms, fast_share = run(path, lambda frame: len(pipeline.process(frame)),
                                  pipeline.reset, args.repeat)
        print(f"{path.name:<20} {'naive':<9} {naive_ms:>9.1f} {1.0:>8.1f}x {naive_share:>10.0%}")
        print(f"{path.name:<20} {'pipeline':<9} {fast_ms:>9.1f} {naive_ms / fast_ms:>8.1f}x "
              f"{fast_share:>10.0%}")


if __name__ == "__main__":
    main()
