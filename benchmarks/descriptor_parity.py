"""dlib's 128-d face descriptor against its torch reimplementation: parity on real faces, and
the time of each (one thread, same run).

Faces: dlib's HOG detector (upsample 1) and 68 landmarks on frames spread evenly over every
clip of ../shared/media and sample_videos/. Parity: chips (`face_chip.extract_chips` vs
`dlib.get_face_chip`, pixels that differ) and descriptors (`FaceDescriptorNet.describe` of
those chips vs `compute_face_descriptor(image, shape)`, L2 distance). Timing, per
descriptor (median of --repeats), dlib and torch float32 with one thread each:

- full: from image and landmarks (dlib's compute_face_descriptor; ours: extract_chips +
  describe), batch of 1;
- network: from ready chips (dlib's compute_face_descriptor of 150x150 chips, a list of 16
  = one dlib batch), batches of 1 and 16;
- chip: dlib.get_face_chip vs extract_chips (numpy) vs extract_chips_torch (CPU).

    python benchmarks/descriptor_parity.py
    python benchmarks/descriptor_parity.py --frames 12 --repeats 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fgnet_video.face.descriptor_net import FaceDescriptorNet, default_model_path  # noqa: E402
from fgnet_video.face.face_chip import (  # noqa: E402
    chip_rect,
    chip_transform,
    extract_chips,
    extract_chips_torch,
    plan_chips,
)
from fgnet_video.face.landmarks import LANDMARKS_MODEL, dlib_module, model_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLIP_DIRS = [REPO.parent / "shared" / "media", REPO / "sample_videos"]
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".wmv", ".mkv", ".webm"}


def clips() -> list[Path]:
    return sorted(p for d in CLIP_DIRS if d.is_dir() for p in d.iterdir()
                  if p.suffix.lower() in VIDEO_SUFFIXES)


def spread_frames(path: Path, count: int) -> list[tuple[int, np.ndarray]]:
    """(index, RGB frame) of `count` frames spread evenly over the clip (decoded in order:
    seeking is unreliable in some of these containers)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    picks = sorted(set(np.linspace(0, len(frames) - 1, count).round().astype(int))) \
        if frames else []
    return [(int(i), cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB)) for i in picks]


def median_ms(fn: Callable[[], object], repeats: int, per: int = 1) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1000 / per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames per clip")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dlib = dlib_module()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file(LANDMARKS_MODEL)))
    recognizer = dlib.face_recognition_model_v1(str(default_model_path()))
    net = FaceDescriptorNet.from_file()

    faces = []  # (clip, frame index, image, dlib shape, landmarks)
    for path in clips():
        found = 0
        for index, image in spread_frames(path, args.frames):
            for rect in detector(image, 1):
                shape = predictor(image, rect)
                points = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
                faces.append((path.name, index, image, shape, points))
                found += 1
        print(f"{path.name}: {found} faces in {args.frames} frames")
    if not faces:
        print("no faces found")
        return 1

    chips, expected, chip_diffs, levels = [], [], [], []
    for _, _, image, shape, points in faces:
        transform = chip_transform(points)
        chip = extract_chips(image, transform)[0]
        reference = dlib.get_face_chip(image, shape, size=150, padding=0.25)
        chip_diffs.append(np.abs(chip.astype(int) - reference.astype(int)))
        levels.append(plan_chips(image.shape, [chip_rect(transform)])[0].level + 1)
        chips.append(chip)
        expected.append(np.array(recognizer.compute_face_descriptor(image, shape)))
    chips_arr = np.stack(chips)
    got = net.describe(chips_arr).double().numpy()
    distance = np.linalg.norm(got - np.stack(expected), axis=1)
    differing = sum(int((d > 0).any(axis=-1).sum()) for d in chip_diffs)
    print(f"\nparity over {len(faces)} faces from {len({f[0] for f in faces})} clips "
          f"(pyramid halvings used: {dict(sorted((v, levels.count(v)) for v in set(levels)))})")
    print(f"  chips: max |difference| {max(int(d.max()) for d in chip_diffs)} grey levels, "
          f"{differing} of {len(faces) * 150 * 150} pixels differ")
    print(f"  descriptors: L2 distance to dlib max {distance.max():.2e}, mean "
          f"{distance.mean():.2e} (descriptor norms ~{np.linalg.norm(got, axis=1).mean():.2f})")

    _, _, image, shape, points = faces[0]
    batch = chips_arr[np.arange(16) % len(chips_arr)]
    chip_list = list(batch)
    r = args.repeats
    rows = [
        ("full, batch 1 (image + landmarks)",
         median_ms(lambda: recognizer.compute_face_descriptor(image, shape), r),
         median_ms(lambda: net.describe(extract_chips(image, chip_transform(points))), r)),
        ("network, batch 1 (chip)",
         median_ms(lambda: recognizer.compute_face_descriptor(chip_list[0]), r),
         median_ms(lambda: net.describe(batch[:1]), r)),
        ("network, batch 16 (chips)",
         median_ms(lambda: recognizer.compute_face_descriptor(chip_list), r, 16),
         median_ms(lambda: net.describe(batch), r, 16)),
    ]
    print(f"\ntime per descriptor, one thread (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread), median of {r}:")
    print(f"  {'':36} {'dlib ms':>9} {'torch ms':>9} {'speed-up':>9}")
    for name, dlib_ms, torch_ms in rows:
        print(f"  {name:36} {dlib_ms:9.2f} {torch_ms:9.2f} {dlib_ms / torch_ms:8.1f}x")
    print(f"  chip only ({image.shape[1]}x{image.shape[0]} frame): dlib.get_face_chip "
          f"{median_ms(lambda: dlib.get_face_chip(image, shape, 150, 0.25), r):.2f} ms, "
          f"extract_chips {median_ms(lambda: extract_chips(image, chip_transform(points)), r):.2f}"
          f" ms, extract_chips_torch "
          f"{median_ms(lambda: extract_chips_torch(image, chip_transform(points)), r):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
