"""What batching keyframes buys the CNN detector on this machine's CPU.

    python benchmarks/detection_batches.py [CLIP] [--keyframes 16] [--rounds 2]

Takes every 10th frame of CLIP (default: benchmarks/real_footage/walk_opera.mp4) up to
--keyframes, and detects them all (both passes, default settings) with
`FaceDetector.detect_many` in batches of 16, 4 and 1 frames, in turn, --rounds times, in
one process (after one warm-up detection). Prints the seconds of each, the faces found
(the same for every batch size: a detection depends on its frame alone) and the load.
`fgnet_video.face.device_detections.detection_batch` is chosen from these figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REAL = Path(__file__).resolve().parent / "real_footage"


def keyframes(clip: str, count: int, every: int = 10) -> list:
    """The first `count` frames of `clip` numbered 0, every, 2 x every, ... (RGB arrays)."""
    from fgnet_video.media.video import VideoReader

    images = []
    with VideoReader(clip) as reader:
        for number, frame in enumerate(reader):
            if number % every == 0:
                images.append(frame.image)
            if len(images) == count:
                break
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", nargs="?", default=str(REAL / "walk_opera.mp4"))
    parser.add_argument("--keyframes", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    from fgnet_video.face.detect import FaceDetector

    images = keyframes(args.clip, args.keyframes)
    height, width = images[0].shape[:2]
    print(f"{Path(args.clip).name}: {len(images)} keyframes of {width}x{height}; "
          f"{torch.get_num_threads()} torch threads; load {os.getloadavg()[0]:.2f}")
    detector = FaceDetector("cnn")
    detector.detect_many(images[:1])
    for _ in range(args.rounds):
        for size in (16, 4, 1):
            started = time.perf_counter()
            found = [faces for at in range(0, len(images), size)
                     for faces in detector.detect_many(images[at:at + size])]
            seconds = time.perf_counter() - started
            print(f"batches of {size:2d}: {seconds:6.2f} s, "
                  f"{1000 * seconds / len(images):5.0f} ms a keyframe, "
                  f"{sum(map(len, found))} faces", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
