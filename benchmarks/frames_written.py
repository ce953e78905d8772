"""When `analyze`'s rows come out, and which detections the face stage ran for them.

    python benchmarks/frames_written.py CLIP [--detector cnn|hog] [--json FILE]

Analyses CLIP in this process as `analyze` does (`fgnet_video.analysis.recording.face_stage`:
the CNN's look-ahead with its detections in the device's thread, `analyze_stream`), with
random tiny weights (the model is not what is measured), and logs the seconds from the
start (after imports; the face networks' loading included) of every progress report: the
frames written so far. Prints when the first rows came, when each fifth of the frames was
written, the whole run, and the detector's work: whole-frame detections (keyframes,
searches and re-detections) and region re-detections (`FaceDetector.in_region`). `--json`
also writes the whole timeline ({"frames": total, "run_s": ..., "written": [[seconds,
frames], ...]}), e.g. to replay `fgnet_video.analysis.eta.TimeLeft` on it with its `clock`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--detector", default="cnn")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from fgnet_video.analysis.recording import face_stage
    from fgnet_video.analysis.stream import analyze_stream
    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.face.detect import FaceDetector
    from fgnet_video.inference.engine import InferenceEngine
    from fgnet_video.media.video import VideoReader, probe
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.weights.loaded import LoadedModel

    info = probe(args.clip)
    frame_shape = (info.height, info.width)
    scanned = {"whole frames": 0, "regions": 0}
    detect_many = FaceDetector.detect_many

    def counted(self, images, small_faces=True):
        for image in images:
            scanned["whole frames" if image.shape[:2] == frame_shape else "regions"] += 1
        return detect_many(self, images, small_faces)

    FaceDetector.detect_many = counted
    engine = InferenceEngine(LoadedModel(random_model(TINY, seed=0), "bp4d", BP4D_AUS),
                             device="cpu", batch_size=16)
    options = AnalyzeOptions.from_kwargs(detector=args.detector)
    written: list[tuple[float, int]] = []
    print(f"load {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); detector {args.detector}")
    started = time.monotonic()

    def progress(frames: int, _faces: int) -> None:
        written.append((time.monotonic() - started, frames))

    with face_stage(args.clip, options, None, engine) as faces, VideoReader(args.clip) as reader:
        stats = analyze_stream(reader, engine, faces, on_progress=progress)
    ended = time.monotonic() - started
    total = stats.frames
    print(f"{total} frames, {stats.faces} faces; first rows ({written[0][1]} frames) at "
          f"{written[0][0]:.1f} s")
    for fifth in range(1, 5):
        at = next(t for t, frames in written if frames >= fifth * total / 5)
        print(f"  {fifth * 20}% of the frames written at {at:.1f} s")
    print(f"run {ended:.1f} s; detections: {scanned['whole frames']} whole frames, "
          f"{scanned['regions']} regions (the detector's work, ahead of the frames written)")
    if args.json is not None:
        args.json.write_text(json.dumps({"clip": args.clip, "detector": args.detector,
                                         "frames": total, "run_s": ended,
                                         "written": written}))


if __name__ == "__main__":
    main()
