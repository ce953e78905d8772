"""End-to-end `analyze` speed on a single-face 720p clip: frames/s and per-stage time.

    python benchmarks/analyze.py                         # CPU, random tiny model
    python benchmarks/analyze.py --weights bp4d.safetensors --device cuda   # GPU, full model

The clip is made from sample_videos/astronaut.mp4 upscaled to 1280x720 (`--frames` frames).
Two runs in the same command:

- pipeline: the streaming pipeline as `analyze` runs it (decode, face and model stages in
  their own threads, detection every 10 frames with tracking between, fast alignment,
  batches of `--batch-size` faces);
- sequential baseline: the same stages one frame at a time on one thread, detection on every
  frame, the exact (release) alignment, one face per forward pass.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from fgnet_video.analysis.stream import analyze_stream
from fgnet_video.aus import BP4D_AUS
from fgnet_video.face.align import ffhq_align
from fgnet_video.face.detect import FaceDetector
from fgnet_video.face.landmarks import LandmarkPredictor
from fgnet_video.inference.engine import InferenceEngine
from fgnet_video.media.video import VideoReader, read_frames
from fgnet_video.model.config import TINY
from fgnet_video.model.init import random_model
from fgnet_video.options import FaceSettings
from fgnet_video.weights.checkpoints import load_model
from fgnet_video.weights.loaded import LoadedModel

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "astronaut.mp4"


def make_720p_clip(path: Path, frames: int) -> Path:
    with av.open(str(SAMPLE)) as source, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i, frame in enumerate(source.decode(video=0)):
            if i == frames:
                break
            image = cv2.resize(frame.to_ndarray(format="rgb24"), (1280, 720),
                               interpolation=cv2.INTER_CUBIC)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def run_pipeline(clip: Path, engine: InferenceEngine) -> tuple[float, dict, int]:
    started = time.perf_counter()
    with VideoReader(clip) as reader:
        stats = analyze_stream(reader, engine, FaceSettings())
    return time.perf_counter() - started, stats.stages.as_dict(), stats.faces


def run_sequential(clip: Path, engine: InferenceEngine) -> tuple[float, dict, int]:
    detector, predictor = FaceDetector("hog", min_face_size=80), LandmarkPredictor()
    stages = {"decode": 0.0, "faces": 0.0, "model": 0.0}
    faces = 0
    started = time.perf_counter()
    mark = time.perf_counter()
    for frame in read_frames(clip):
        stages["decode"] += time.perf_counter() - mark
        mark = time.perf_counter()
        aligned = [ffhq_align(frame.image, predictor(frame.image, d.box), method="exact").image
                   for d in detector(frame.image)]
        stages["faces"] += time.perf_counter() - mark
        mark = time.perf_counter()
        for face in aligned:
            engine.predict([face])
        faces += len(aligned)
        stages["model"] += time.perf_counter() - mark
        mark = time.perf_counter()
    return time.perf_counter() - started, {k: round(v, 3) for k, v in stages.items()}, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint (default: random tiny)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()

    if args.weights:
        loaded = load_model(args.weights)
    else:
        loaded = LoadedModel(random_model(TINY), "bp4d", BP4D_AUS)
    engine = InferenceEngine(loaded, device=args.device, precision=args.precision,
                             batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_720p_clip(Path(tmp) / "clip720p.mp4", args.frames)
        engine.predict(np.zeros((1, 256, 256, 3), np.uint8))  # warm-up
        results = {"pipeline": run_pipeline(clip, engine),
                   "sequential": run_sequential(clip, engine)}
    model = "tiny (random)" if not args.weights else Path(args.weights).name
    print(f"analyze on a 1280x720 single-face clip, {args.frames} frames, model {model}, "
          f"device {engine.device}, {str(engine.dtype).replace('torch.', '')}")
    print(f"{'run':<11} {'seconds':>8} {'frames/s':>9} {'faces':>6}  stage seconds")
    for name, (seconds, stages, faces) in results.items():
        print(f"{name:<11} {seconds:8.2f} {args.frames / seconds:9.1f} {faces:6d}  {stages}")
    speedup = results["sequential"][0] / results["pipeline"][0]
    print(f"pipeline speedup over the sequential baseline: {speedup:.1f}x")


if __name__ == "__main__":
    main()
