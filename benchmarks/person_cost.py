"""What person ids cost: the time of one dlib face descriptor, and per track (three of them),
against the face stage of the same clip.

    python benchmarks/person_cost.py                      # the vox clip of ../shared/media
    python benchmarks/person_cost.py --video clip.mp4 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from fgnet_video.face.person import FaceEmbedder
from fgnet_video.face.pipeline import FacePipeline
from fgnet_video.media.video import VideoReader

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "vox_talking.mp4"
DESCRIPTORS_PER_TRACK = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    pipeline = FacePipeline()
    faces, started = [], time.perf_counter()
    with VideoReader(args.video) as reader:
        for frame in reader:
            faces += [(frame.image, face) for face in pipeline.process(frame)]
    stage = time.perf_counter() - started
    if not faces:
        print(f"{args.video}: no face found")
        return 1
    embed = FaceEmbedder()
    image, face = faces[0]
    embed(image, face.box, face.landmarks)  # loads the model
    times = []
    for _ in range(args.repeats):
        begin = time.perf_counter()
        embed(image, face.box, face.landmarks)
        times.append(time.perf_counter() - begin)
    per = statistics.median(times)
    print(f"{Path(args.video).name}: {len(faces)} faces, face stage (with person ids) "
          f"{stage:.2f} s")
    print(f"one descriptor: {per * 1000:.1f} ms (median of {args.repeats}, range "
          f"{min(times) * 1000:.1f}-{max(times) * 1000:.1f}); per track "
          f"({DESCRIPTORS_PER_TRACK} descriptors): {per * DESCRIPTORS_PER_TRACK:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
