"""The face stage's cost by part, per 720p frame, HOG against the CNN detector, on this CPU.

    python benchmarks/face_stage_parts.py [VIDEO] [--frames 12] [--threads 1] [--dlib-cnn]

Frames of VIDEO (default: the first real multi-person clip of benchmarks/real_footage)
scaled to 1280x720 are timed part by part, in one process, `--threads` torch threads:

- detection per keyframe: the first pass (faces of 80 px and more) and the small-face pass
  (the 2x upscaled copy, for faces down to 40 px), for dlib's HOG and the torch CNN (fp32),
  and with --dlib-cnn dlib's own CNN on the first pass (seconds per frame: few frames);
- the torch CNN on the small-face pass's 2x copy, over the whole tiled pyramid (as before
  2026-12-07) against only the levels of faces under 80 px (`MmodDetector.scan_levels`, as
  the small-face pass runs now);
- the torch CNN's first pass batched 4 and 16 frames a call;
- per face: 68 landmarks (dlib), the FFHQ alignment (`fast`, the default, and the release's
  `exact`), and the face descriptor (dlib's and the torch one, one face a call);
- decode of a 720p frame.

From the parts, the face stage per frame with the defaults (a detection every 10th frame,
its small-face pass at most every 10 frames, landmarks and alignment on every frame) is
    keyframe cost / 10 + faces x (landmarks + fast alignment)
(descriptors: a track's first 3 frames only, left out). Prints ms; the load average with it.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np

REAL = Path(__file__).resolve().parent / "real_footage"


def timed(run, repeat: int = 1) -> float:
    """Best wall seconds of `repeat` runs of `run()`."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", nargs="?", default=None)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dlib-cnn", action="store_true")
    args = parser.parse_args()
    import torch

    from fgnet_video.face.align import ffhq_align
    from fgnet_video.face.detect import FaceDetector, rescale
    from fgnet_video.face.landmarks import CNN_DETECTOR_MODEL, LandmarkPredictor, model_file
    from fgnet_video.face.mmod import MmodDetector
    from fgnet_video.face.person import FaceEmbedder
    from fgnet_video.media.video import read_frames
    from fgnet_video.options import DETECTOR_MIN_FACE, FaceSettings

    torch.set_num_threads(args.threads)
    video = args.video or str(sorted(REAL.glob("*.mp4"))[0])
    started = time.perf_counter()
    frames = []
    for frame in read_frames(video):
        frames.append(cv2.resize(frame.image, (1280, 720), interpolation=cv2.INTER_AREA))
        if len(frames) == args.frames:
            break
    decode_ms = 1000 * (time.perf_counter() - started) / len(frames)
    print(f"{video}: {len(frames)} frames scaled to 1280x720; torch {torch.__version__}, "
          f"{args.threads} thread(s); load average {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")
    rows = {}
    for kind in ("hog", "cnn"):
        detector = FaceDetector(kind, min_face_size=40)
        detector(frames[0])  # warm-up
        first = timed(lambda d=detector: [d(f, small_faces=False) for f in frames])
        both = timed(lambda d=detector: [d(f, small_faces=True) for f in frames])
        rows[kind] = (1000 * first / len(frames), 1000 * (both - first) / len(frames))
    mmod = MmodDetector.from_file(model_file(CNN_DETECTOR_MODEL))
    copies = [rescale(f, DETECTOR_MIN_FACE / 40) for f in frames]
    small_ms = {name: 1000 * timed(lambda m=max_side: mmod.detect(copies, max_side=m))
                / len(frames) for name, max_side in (("whole", math.inf),
                                                     ("levels", 2 * DETECTOR_MIN_FACE))}
    cnn = FaceDetector("cnn", min_face_size=80)
    batched = {b: 1000 * timed(lambda b=b: [cnn.detect_many(frames[i:i + b])
                                            for i in range(0, len(frames), b)]) / len(frames)
               for b in (4, 16)}
    faces = [(frame, d) for frame in frames for d in FaceDetector("cnn", min_face_size=40)(frame)]
    predictor, embedder = LandmarkPredictor(), FaceEmbedder()
    marks = [predictor(frame, d.box) for frame, d in faces]
    n = max(len(faces), 1)
    landmark_ms = 1000 * timed(lambda: [predictor(f, d.box) for f, d in faces]) / n
    align_ms = {method: 1000 * timed(lambda method=method: [
        ffhq_align(f, m, method=method) for (f, _), m in zip(faces, marks, strict=True)]) / n
        for method in ("exact", "fast")}
    default_align = FaceSettings().align_method
    torch_desc_ms = 1000 * timed(lambda: [embedder(f, d.box, m)
                                          for (f, d), m in zip(faces, marks, strict=True)]) / n
    import dlib

    from fgnet_video.face.landmarks import to_dlib_rect

    dlib_model = dlib.face_recognition_model_v1(
        str(model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def dlib_descriptors() -> None:
        for (frame, d), m in zip(faces, marks, strict=True):
            shape = dlib.full_object_detection(to_dlib_rect(d.box),
                                               [dlib.point(*map(int, np.round(p))) for p in m])
            dlib_model.compute_face_descriptor(frame, shape)

    dlib_desc_ms = 1000 * timed(dlib_descriptors) / n
    per_frame_faces = len(faces) / len(frames)
    print(f"decode (and scale): {decode_ms:.1f} ms/frame; faces found by the CNN: "
          f"{per_frame_faces:.2f} per frame")
    print(f"{'detector':<10} {'first pass':>11} {'small pass':>11}  (ms per keyframe)")
    for kind, (first, small) in rows.items():
        print(f"{kind:<10} {first:>11.0f} {small:>11.0f}")
    if args.dlib_cnn:
        dlib_cnn = dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR_MODEL)))
        ms = 1000 * timed(lambda: [dlib_cnn(f, 0) for f in frames[:2]]) / 2
        print(f"{'dlib cnn':<10} {ms:>11.0f} {'':>11}  ({ms / rows['cnn'][0]:.1f}x the torch "
              "CNN's first pass)")
    print(f"torch CNN small-face pass, the 2x copy: whole pyramid {small_ms['whole']:.0f} "
          f"ms/keyframe, only the levels of faces under {DETECTOR_MIN_FACE} px (as run) "
          f"{small_ms['levels']:.0f} ms ({small_ms['whole'] / small_ms['levels']:.2f}x)")
    print("torch CNN first pass batched: " + ", ".join(
        f"batch {b}: {ms:.0f} ms/frame" for b, ms in batched.items()))
    print(f"per face: landmarks {landmark_ms:.1f} ms, alignment {align_ms['fast']:.1f} ms "
          f"fast / {align_ms['exact']:.1f} ms exact, descriptor torch {torch_desc_ms:.1f} ms "
          f"/ dlib {dlib_desc_ms:.1f} ms")
    per_face = landmark_ms + align_ms[default_align]
    for kind, (first, small) in rows.items():
        stage = (first + small) / 10 + per_frame_faces * per_face
        print(f"face stage per frame, {kind}: about {stage:.0f} ms "
              f"(detection {(first + small) / 10:.0f} + landmarks and {default_align} "
              f"alignment {per_frame_faces * per_face:.0f})")


if __name__ == "__main__":
    main()
