"""Peak memory of the CNN face detector on large frames, with and without the pixel budget
per network call (`fgnet_video.face.mmod.BATCH_PIXELS`), same frames, same command.

    python benchmarks/detector_memory.py [--frames 4] [--width 3840] [--threads 2]
    python benchmarks/detector_memory.py --frames 16   # a whole device batch (minutes)

A real frame (benchmarks/real_footage/walk_opera.mp4, frame 0) scaled to `--width` (16:9)
is detected `--frames` times in one `FaceDetector.detect_many` call with the default
settings (both passes: the frame and its 2x copy), in a fresh process per configuration:
the budget as shipped, and no budget (the frames `batch_size`, 4, a network call, and the
copies of all frames made first, as before 2026-12-07). Prints each configuration's peak
resident memory (ru_maxrss), seconds and faces found, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CLIP = Path(__file__).resolve().parent / "real_footage" / "walk_opera.mp4"


def measure(frames: int, width: int, threads: int, budget: bool) -> dict:
    """In this process: detect, then report peak RSS (MiB), seconds and faces per frame."""
    import resource
    import time

    import cv2
    import numpy as np
    import torch

    from fgnet_video.face import mmod
    from fgnet_video.face.detect import FaceDetector
    from fgnet_video.options import FaceSettings

    torch.set_num_threads(threads)
    if not budget:
        mmod.BATCH_PIXELS = sys.maxsize
    capture = cv2.VideoCapture(str(CLIP))
    ok, bgr = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read {CLIP}")
    image = np.ascontiguousarray(cv2.cvtColor(
        cv2.resize(bgr, (width, width * 9 // 16), interpolation=cv2.INTER_CUBIC),
        cv2.COLOR_BGR2RGB))
    detector = FaceDetector.for_settings(FaceSettings(detector="cnn"))
    started = time.perf_counter()
    found = detector.detect_many([image] * frames)
    seconds = time.perf_counter() - started
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "seconds": round(seconds, 1), "faces": [len(f) for f in found]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=("budget", "none"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.frames, args.width, args.threads,
                                 args.child == "budget")))
        return
    print(f"{args.frames} frames of {args.width}x{args.width * 9 // 16}, {args.threads} "
          f"torch threads; load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    for child, label in (("none", "frames 4 a call (before)"),
                         ("budget", "BATCH_PIXELS a call (now)")):
        done = subprocess.run([sys.executable, __file__, "--child", child,
                               "--frames", str(args.frames), "--width", str(args.width),
                               "--threads", str(args.threads)],
                              capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{label:<28} peak {result['peak_mib']} MiB, {result['seconds']} s, faces "
              f"{result['faces']}")


if __name__ == "__main__":
    main()
