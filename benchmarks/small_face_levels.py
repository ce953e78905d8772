"""The CNN's small-face pass: only the pyramid levels of faces under 80 px
(`MmodDetector.scan_levels`, what `FaceDetector` runs) against the whole tiled pyramid (what
it ran before 2026-12-07), on real frames, same run: the detections and the time.

    python benchmarks/small_face_levels.py [VIDEO ...] [--every 25] [--per-clip 10]

VIDEOs default to the stored real multi-person excerpts (benchmarks/real_footage) and the
../shared/media clips; add the licence-restricted ones (`make_excerpts.py --restricted-out`)
by path. Every `--every`-th frame, at most `--per-clip` per clip, at its own size, goes
through `FaceDetector("cnn")` with the default minimum face (40 px: a pass on the frame,
then the small-face pass on its 2x copy), torch fp32 on one thread, once with each
small-face scan. Prints the faces both give, those only one gives, the largest score
difference, ms per frame (both passes), and the load average.

The small-face pass alone (`MmodDetector.detect` on the copy, boxes under 80 frame px) does
differ: the level scan keeps boxes of about 68 px (its last level) that the whole pyramid's
83 px boxes of the next level suppressed in NMS. Those are faces of about 80 px, which the
first pass finds, so the detector's faces are the ones this script compares.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = (sorted((REPO / "benchmarks" / "real_footage").glob("*.mp4"))
                 + sorted(p for p in (REPO.parent / "shared" / "media").glob("*")
                          if p.suffix in {".mp4", ".avi", ".wmv", ".mov"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--per-clip", type=int, default=10)
    args = parser.parse_args()
    import torch

    from fgnet_video.face.detect import FaceDetector
    from fgnet_video.media.video import read_frames
    from fgnet_video.options import FaceSettings

    class WholePyramid(FaceDetector):
        """The detector as it was: every pass scans dlib's whole tiled pyramid."""

        def _run(self, images, largest=float("inf")):
            return super()._run(images)

    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores), torch "
          f"{torch.__version__}, one thread")
    settings = FaceSettings(detector="cnn")  # the default minimum face: two passes
    detectors = {"whole": WholePyramid.for_settings(settings),
                 "levels": FaceDetector.for_settings(settings)}
    seconds = {"whole": 0.0, "levels": 0.0}
    frames = both = 0
    only: dict[str, list[str]] = {"whole": [], "levels": []}
    score_diff = 0.0
    for video in args.videos or DEFAULT_CLIPS:
        images = [f.image for i, f in enumerate(read_frames(video)) if i % args.every == 0]
        for image in images[:args.per_clip]:
            found = {}
            for name, detector in detectors.items():
                started = time.perf_counter()
                found[name] = {d.box: d.score for d in detector(image)}
                seconds[name] += time.perf_counter() - started
            frames += 1
            for box in found["whole"].keys() & found["levels"].keys():
                both += 1
                score_diff = max(score_diff, abs(found["whole"][box] - found["levels"][box]))
            for name, other in (("whole", "levels"), ("levels", "whole")):
                only[name] += [f"{video.name} {box}" for box in found[name].keys()
                               - found[other].keys()]
    print(f"{frames} frames: {both} faces found by both, max score difference "
          f"{score_diff:.1e}; only the whole pyramid: {only['whole'] or 'none'}; only the "
          f"levels: {only['levels'] or 'none'}")
    print(f"ms per frame, both passes: whole pyramid {1000 * seconds['whole'] / frames:.0f}, "
          f"levels {1000 * seconds['levels'] / frames:.0f} "
          f"({seconds['whole'] / seconds['levels']:.2f}x)")


if __name__ == "__main__":
    main()
