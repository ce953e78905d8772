"""Speed of the face stage's networks on a device: dlib's MMOD detector and face-descriptor
ResNet in PyTorch (fgnet_video/face/mmod.py, descriptor_net.py), by batch and precision.

    python benchmarks/face_nets_speed.py --device cuda [--inputs gpu_inputs/] \
        [--batches 16,64] [--dtypes fp32,tf32,bf16,fp16] [--repeats 3]

Inputs (`--inputs`, made by `gpu_check.py --prepare`, so the GPU machine needs neither dlib
nor face_recognition_models): face_frames.npz (real 1280x720 frames with several faces, and
150x150 face chips cut from them on the CPU machine) and the two dlib .dat files (0.7 and
22 MB; the 68-point landmark model, 100 MB, stays on the CPU machine: landmarks and
alignment are measured there, `benchmarks/face_stage_parts.py`). Without --inputs the frames
and chips are made here (needs dlib and face_recognition_models).

Per batch size and dtype, the best of --repeats (after one warm-up call):
- detector, first pass: 720p frames/s, the whole `MmodDetector.detect` (tiled pyramid on
  the device, network, decoding and NMS on the CPU) of `batch` frames with
  `batch_size=batch` (the network takes at most `mmod.BATCH_PIXELS` of frames a call: 16
  frames of 720p); and "as run": the same frames with `detect`'s default grouping, 4
  frames a network call, which is how the face stage runs each batch of up to 16 frames
  (`face.device_detections.DEVICE_BATCH`);
- detector, small-face pass: the 2x copy (2560x1440) frames/s, what the default
  `--min-face 40` adds every 10th frame (the pyramid levels of faces under 80 px only, as
  `FaceDetector` scans it: `MmodDetector.scan_levels`);
- descriptors: chips/s.
dtypes: fp32 is IEEE fp32 everywhere (`fgnet_video.fp32`, what the face stage runs); tf32 is
the same float32 networks with cuDNN's TF32 convolutions (what ran on CUDA before
2026-12-07; the same as fp32 on a CPU); bf16 and fp16 are the networks in those dtypes.
Other dtypes than fp32 are compared with fp32 on the same inputs: boxes matched within 1 px
and the largest confidence difference; the largest descriptor distance. Every dtype's
first-pass detections and descriptors are also held to dlib's own, computed by dlib on the
CPU machine (at `--prepare`, or here for scaled frames): the share of dlib's faces with a
box within 1 px, the largest confidence difference, the boxes dlib does not give, and the
largest descriptor distance (the issue's parity: 99% within 1 px and 0.01, no extra; 1e-4).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# tf32: float32 networks with cuDNN's TF32 convolutions, as they ran on CUDA before
# 2026-12-07 (`fgnet_video.fp32` keeps them IEEE fp32 now; `tf32_allowed`)
DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@contextlib.contextmanager
def tf32_allowed() -> Iterator[None]:
    """The face networks' float32 on CUDA with TF32 switched on and not turned off by
    `exact_fp32` (nothing changes on a CPU)."""
    from unittest import mock

    from fgnet_video.face import descriptor_net, mmod
    from fgnet_video.fp32 import tf32_switches

    switches = tf32_switches()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in switches]
    for owner, name, ieee in switches:
        setattr(owner, name, "tf32" if isinstance(ieee, str) else True)
    try:
        with mock.patch.object(mmod, "exact_fp32", lambda device: contextlib.nullcontext()), \
                mock.patch.object(descriptor_net, "exact_fp32",
                                  lambda device: contextlib.nullcontext()):
            yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


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
    frames, chips = np.stack(images), np.stack(chips)
    np.savez_compressed(folder / "face_frames.npz", frames=frames, chips=chips,
                        **dlib_references(frames, chips))
    for name in (CNN_DETECTOR_MODEL, FACE_DESCRIPTOR_MODEL):
        shutil.copy(model_file(name), folder / name)


def dlib_references(frames: np.ndarray, chips: np.ndarray) -> dict[str, np.ndarray]:
    """What dlib itself gives (CPU machine, with dlib): its CNN detector's faces in each
    frame (upsample 0; `dlib_frame`, `dlib_box` as left, top, right, bottom, `dlib_score`)
    and its descriptor of each chip (`dlib_descriptor`)."""
    import dlib

    from fgnet_video.face.landmarks import CNN_DETECTOR_MODEL, model_file
    from fgnet_video.face.person import FACE_DESCRIPTOR_MODEL

    detector = dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR_MODEL)))
    describer = dlib.face_recognition_model_v1(str(model_file(FACE_DESCRIPTOR_MODEL)))
    found = [(i, (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence)
             for i, frame in enumerate(frames) for d in detector(frame, 0)]
    return {"dlib_frame": np.array([i for i, _, _ in found], np.int64).reshape(-1),
            "dlib_box": np.array([b for _, b, _ in found], np.int64).reshape(-1, 4),
            "dlib_score": np.array([c for _, _, c in found], np.float64).reshape(-1),
            "dlib_descriptor": np.array([describer.compute_face_descriptor(chip)
                                         for chip in chips], np.float64).reshape(-1, 128)}


def dlib_parity(references: dict[str, np.ndarray], picks: np.ndarray, detections,
                chip_picks: np.ndarray, descriptors) -> dict:
    """The torch networks' output for frames `picks` and chips `chip_picks` against dlib's
    (`dlib_references`), as the issue's parity asks: dlib's faces matched by a box within 1
    px, the largest confidence difference of those, torch boxes matching none (extras), and
    the largest descriptor distance (L2)."""
    expected = [[(tuple(box), score) for f, box, score in zip(
        references["dlib_frame"], references["dlib_box"], references["dlib_score"],
        strict=True) if f == i] for i in picks]
    share, worst, total = detections_agree(expected, detections)
    extras = sum(len(found) for found in detections) - round(share * total)
    distance = np.linalg.norm(np.asarray(descriptors, np.float64)
                              - references["dlib_descriptor"][chip_picks], axis=1)
    return {"dlib_boxes": total, "dlib_boxes_matched": share,
            "dlib_confidence_diff_max": worst, "extra_boxes": extras,
            "dlib_descriptor_l2_max": float(distance.max(initial=0.0))}


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
    parser.add_argument("--dtypes", default="fp32,tf32,bf16,fp16")
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
    references = dict(data) if "dlib_box" in data else None
    if args.scale != 1.0:
        frames = np.stack([cv2.resize(f, None, fx=args.scale, fy=args.scale,
                                      interpolation=cv2.INTER_AREA) for f in frames])
        # the prepared references are for full-size frames: dlib redoes them here when it
        # is installed (the dry run, on the CPU machine); else no parity figures
        references = dlib_references(frames, chips) \
            if importlib.util.find_spec("dlib") is not None else None
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    upscaled = np.stack([cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
                         for f in frames])
    rows, reference = [], {}
    h, w = frames.shape[1:3]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), "
          f"torch {torch.__version__}; {len(frames)} frames {w}x{h}, {len(chips)} chips")
    def timed(name: str, batch: int, detector, net) -> tuple[dict, dict]:
        """(outputs, row of figures) of one dtype and batch size."""
        picks = np.arange(batch) % len(frames)
        first = [frames[i] for i in picks]
        small = [upscaled[i] for i in picks]
        chip_batch = chips[np.arange(batch) % len(chips)]
        out: dict = {}

        def detect_first() -> None:
            out["first"] = detector.detect(first, batch_size=batch)

        def detect_first_as_run() -> None:  # the face stage's own grouping
            detector.detect(first)

        def detect_small() -> None:
            out["small"] = detector.detect(small, batch_size=batch,
                                           max_side=2 * DETECTOR_MIN_FACE)

        def describe() -> None:
            out["desc"] = net.describe(chip_batch, batch_size=batch).float().cpu()

        row = {"dtype": name, "batch": batch,
               "detector_first_pass_fps": batch / best_seconds(detect_first, args.repeats,
                                                               sync),
               "detector_first_pass_fps_as_run": batch / best_seconds(
                   detect_first_as_run, args.repeats, sync),
               "detector_small_pass_fps": batch / best_seconds(detect_small, args.repeats,
                                                               sync),
               "descriptors_per_s": batch / best_seconds(describe, args.repeats, sync)}
        if references is not None:  # inputs prepared before dlib_references existed: None
            row.update(dlib_parity(references, picks, out["first"],
                                   np.arange(batch) % len(chips), out["desc"]))
        return out, row

    for name in args.dtypes.split(","):
        dtype = getattr(torch, DTYPES[name])
        detector = MmodDetector.from_file(inputs / "mmod_human_face_detector.dat").to(
            device, dtype)
        net = FaceDescriptorNet.from_file(
            inputs / "dlib_face_recognition_resnet_model_v1.dat").to(device, dtype)
        for batch in map(int, args.batches.split(",")):
            with tf32_allowed() if name == "tf32" else contextlib.nullcontext():
                out, row = timed(name, batch, detector, net)
            if name == "fp32":
                reference[batch] = out
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
