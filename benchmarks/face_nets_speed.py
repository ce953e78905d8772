"""Speed of the face stage's networks on a device: dlib's MMOD detector and face-descriptor
ResNet in PyTorch (fgnet_video/face/mmod.py, descriptor_net.py), by batch and precision.

    python benchmarks/face_nets_speed.py --device cuda [--inputs gpu_inputs/] \
        [--batches 16,64] [--dtypes fp32,bf16,fp16] [--repeats 3]

Inputs (`--inputs`, made by `gpu_check.py --prepare`, so the GPU machine needs neither dlib
nor face_recognition_models): face_frames.npz (real 1280x720 frames with several faces, and
150x150 face chips cut from them on the CPU machine) and the two dlib .dat files (0.7 and
22 MB; the 68-point landmark model, 100 MB, stays on the CPU machine: landmarks and
alignment are measured there, `benchmarks/face_stage_parts.py`). Without --inputs the frames
and chips are made here (needs dlib and face_recognition_models).

Per batch size and dtype, the best of --repeats (after one warm-up call):
- detector, first pass: 720p frames/s, the whole `MmodDetector.detect` (tiled pyramid on
  the device, network, decoding and NMS on the CPU);
- detector, small-face pass: the 2x copy (2560x1440) frames/s, what the default
  `--min-face 40` adds every 10th frame (the pyramid levels of faces under 80 px only, as
  `FaceDetector` scans it: `MmodDetector.scan_levels`);
- descriptors: chips/s.
Other dtypes than fp32 are compared with fp32 on the same inputs: boxes matched within 1 px
and the largest confidence difference; the largest descriptor distance.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def make_inputs(folder: Path, frames: int = 4) -> None:
    """face_frames.npz (real multi-face frames at 1280x720, and face chips) and the two
    .dat files, into `folder` (CPU machine, with dlib)."""
    import shutil

    import cv2

    from fgnet_video.face.detect import FaceDetector
    from fgnet_video.face.face_chip import chip_transform, extract_chips
    from fgnet_video.face.landmarks import (
        CNN_DETECTOR_MODEL,
        LandmarkPredictor,
        model_file,
    )
    from fgnet_video.face.person import FACE_DESCRIPTOR_MODEL
    from fgnet_video.media.video import read_frames

    folder.mkdir(parents=True, exist_ok=True)
    clip = sorted((Path(__file__).resolve().parent / "real_footage").glob("*.mp4"))[0]
    images = []
    for k, frame in enumerate(read_frames(clip)):
        if k % 10 == 0:
            images.append(cv2.resize(frame.image, (1280, 720), interpolation=cv2.INTER_AREA))
        if len(images) == frames:
            break
    detector, predictor = FaceDetector("cnn"), LandmarkPredictor()
    chips = []
    for image in images:
        for found in detector(image):
            points = np.round(predictor(image, found.box))
            chips.append(extract_chips(image, [chip_transform(points)])[0])
    np.savez_compressed(folder / "face_frames.npz", frames=np.stack(images),
                        chips=np.stack(chips))
    for name in (CNN_DETECTOR_MODEL, FACE_DESCRIPTOR_MODEL):
        shutil.copy(model_file(name), folder / name)


def best_seconds(run, repeats: int, sync) -> float:
    run()  # warm-up (kernels, allocator)
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def detections_agree(reference, other) -> tuple[float, float, int]:
    """(share of reference boxes with an other box within 1 px, largest confidence
    difference of those, reference boxes) over all frames."""
    matched = total = 0
    worst = 0.0
    for ref_frame, other_frame in zip(reference, other, strict=True):
        for box, score in ref_frame:
            total += 1
            near = [s for b, s in other_frame
                    if max(abs(x - y) for x, y in zip(b, box, strict=True)) <= 1]
            if near:
                matched += 1
                worst = max(worst, min(abs(s - score) for s in near))
    return (matched / total if total else 1.0), worst, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--inputs", type=Path, default=None)
    parser.add_argument("--batches", default="16,64")
    parser.add_argument("--dtypes", default="fp32,bf16,fp16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="frame scale (the dry run uses small frames)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import cv2
    import torch

    from fgnet_video.face.descriptor_net import FaceDescriptorNet
    from fgnet_video.face.mmod import MmodDetector
    from fgnet_video.options import DETECTOR_MIN_FACE

    inputs = args.inputs
    if inputs is None:
        inputs = Path("/tmp/face_nets_inputs")
        make_inputs(inputs)
    data = np.load(inputs / "face_frames.npz")
    frames, chips = data["frames"], data["chips"]
    if args.scale != 1.0:
        frames = np.stack([cv2.resize(f, None, fx=args.scale, fy=args.scale,
                                      interpolation=cv2.INTER_AREA) for f in frames])
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    upscaled = np.stack([cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
                         for f in frames])
    rows, reference = [], {}
    h, w = frames.shape[1:3]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), "
          f"torch {torch.__version__}; {len(frames)} frames {w}x{h}, {len(chips)} chips")
    for name in args.dtypes.split(","):
        dtype = getattr(torch, DTYPES[name])
        detector = MmodDetector.from_file(inputs / "mmod_human_face_detector.dat").to(
            device, dtype)
        net = FaceDescriptorNet.from_file(
            inputs / "dlib_face_recognition_resnet_model_v1.dat").to(device, dtype)
        for batch in map(int, args.batches.split(",")):
            picks = np.arange(batch) % len(frames)
            first = [frames[i] for i in picks]
            small = [upscaled[i] for i in picks]
            chip_batch = chips[np.arange(batch) % len(chips)]
            out = {}

            def detect_first(out=out, first=first, batch=batch, detector=detector):
                out["first"] = detector.detect(first, batch_size=batch)

            def detect_small(out=out, small=small, batch=batch, detector=detector):
                out["small"] = detector.detect(small, batch_size=batch,
                                               max_side=2 * DETECTOR_MIN_FACE)

            def describe(out=out, chip_batch=chip_batch, batch=batch, net=net):
                out["desc"] = net.describe(chip_batch, batch_size=batch).float().cpu()

            row = {"dtype": name, "batch": batch,
                   "detector_first_pass_fps": batch / best_seconds(detect_first, args.repeats,
                                                                   sync),
                   "detector_small_pass_fps": batch / best_seconds(detect_small, args.repeats,
                                                                   sync),
                   "descriptors_per_s": batch / best_seconds(describe, args.repeats, sync)}
            if name == "fp32":
                reference[batch] = dict(out)
            elif batch in reference:
                share, conf, boxes = detections_agree(reference[batch]["first"], out["first"])
                row["fp32_boxes"] = boxes
                row["boxes_within_1px_of_fp32"] = share
                row["confidence_diff_max"] = conf
                row["descriptor_l2_diff_max"] = float(
                    (reference[batch]["desc"] - out["desc"]).norm(dim=1).max())
            rows.append(row)
            print(json.dumps(row))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
