"""Parity and speed of the PyTorch MMOD face detector (fgnet_video.face.mmod) against
dlib's own CNN face detector (dlib.cnn_face_detection_model_v1), same frames, same run.

    python benchmarks/mmod_parity.py                  # 13 frames per clip, 720p
    python benchmarks/mmod_parity.py --per-clip 4 --height 480
    python benchmarks/mmod_parity.py --dtype bf16 --upsample 1 --real-footage

Frames are spread evenly over every clip in ../shared/media and sample_videos/, scaled to
`--height` rows (aspect kept) and centred on a black 16:9 canvas (1280x720 by default), as
RGB uint8 (`--real-footage`: also those of the stored multi-person clips of
benchmarks/real_footage). Each frame goes through dlib (upsample `--upsample`, 0 by default;
1 is the small-face pass's 2x copy; its threshold 0) and then through the torch detector
(`--dtype`, fp32 by default, the exact path; bf16 or fp16 to hold a reduced precision to
the same guard; torch.set_num_threads(1), one frame per call); a dlib face counts as
matched when a torch face has every edge within 1 px and a confidence within 0.01. Extras
are torch faces no dlib face matched. Times are wall seconds per frame (dlib's CPU seconds
too: it may use more than one core); the first call of each is a warm-up, not counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fgnet_video.face.mmod import MmodDetector, default_model_path  # noqa: E402

CLIP_DIRS = (REPO.parent / "shared" / "media", REPO / "sample_videos")
REAL_FOOTAGE = REPO / "benchmarks" / "real_footage"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CLIP_SUFFIXES = {".avi", ".mp4", ".mov", ".wmv", ".mkv"}
BOX_TOLERANCE_PX = 1
SCORE_TOLERANCE = 0.01


def clips(folders: tuple[Path, ...] = CLIP_DIRS) -> list[Path]:
    """Every video in `folders`, sorted."""
    return sorted(p for d in folders if d.is_dir() for p in d.iterdir()
                  if p.suffix.lower() in CLIP_SUFFIXES)


def spread_frames(path: Path, count: int) -> list[np.ndarray]:
    """`count` BGR frames evenly spread over the clip (decoded in order: seeking is not
    exact on variable-rate or WMV clips)."""
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    if not decoded:
        return []
    picks = np.unique(np.linspace(0, len(decoded) - 1, count).round().astype(int))
    return [decoded[i] for i in picks]


def on_canvas(bgr: np.ndarray, height: int) -> np.ndarray:
    """RGB frame scaled to `height` rows (aspect kept, at most 16:9 wide) and centred on a
    black height x (16/9 height) canvas."""
    width = round(height * 16 / 9)
    scale = min(height / bgr.shape[0], width / bgr.shape[1])
    size = (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.cvtColor(cv2.resize(bgr, size, interpolation=interpolation), cv2.COLOR_BGR2RGB)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    canvas[top:top + size[1], left:left + size[0]] = scaled
    return canvas


def compare(expected, actual) -> tuple[int, int, int, list[float], list[float]]:
    """(matched, unmatched dlib, extra torch, box errors, confidence errors) of one frame;
    errors are those of each dlib face's closest torch face."""
    unmatched = list(actual)
    matched, box_errors, score_errors = 0, [], []
    for box, score in expected:
        if not actual:
            continue
        best = min(actual, key=lambda a: max(abs(p - q) for p, q in zip(a[0], box, strict=True)))
        box_errors.append(max(abs(p - q) for p, q in zip(best[0], box, strict=True)))
        score_errors.append(abs(best[1] - score))
        if (box_errors[-1] <= BOX_TOLERANCE_PX and score_errors[-1] <= SCORE_TOLERANCE
                and best in unmatched):
            unmatched.remove(best)
            matched += 1
    return matched, len(expected) - matched, len(unmatched), box_errors, score_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-clip", type=int, default=13, help="frames per clip")
    parser.add_argument("--height", type=int, default=720, help="frame rows (16:9 canvas)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--upsample", type=int, default=0)
    parser.add_argument("--real-footage", action="store_true")
    args = parser.parse_args()

    import dlib

    load_before = os.getloadavg()[0]
    torch.set_num_threads(1)
    model = default_model_path()
    dlib_detector = dlib.cnn_face_detection_model_v1(str(model))
    torch_detector = MmodDetector.from_file(model).eval().to(DTYPES[args.dtype])

    frames, names = [], []
    for clip in clips(CLIP_DIRS + ((REAL_FOOTAGE,) if args.real_footage else ())):
        picked = spread_frames(clip, args.per_clip)
        frames += [on_canvas(f, args.height) for f in picked]
        names.append(f"{clip.name} ({len(picked)})")
    if not frames:
        sys.exit("no clips found in " + ", ".join(map(str, CLIP_DIRS)))

    dlib_detector(frames[0], args.upsample)  # warm-ups
    torch_detector.detect(frames[:1], upsample=args.upsample)
    totals = dict(dlib=0, matched=0, missed=0, extra=0, torch=0)
    box_errors: list[float] = []
    score_errors: list[float] = []
    dlib_wall = dlib_cpu = torch_wall = 0.0
    for frame in frames:
        wall, cpu = time.perf_counter(), time.process_time()
        expected = [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()),
                     d.confidence) for d in dlib_detector(frame, args.upsample)]
        dlib_wall += time.perf_counter() - wall
        dlib_cpu += time.process_time() - cpu
        wall = time.perf_counter()
        actual = torch_detector.detect([frame], upsample=args.upsample)[0]
        torch_wall += time.perf_counter() - wall
        matched, missed, extra, boxes, scores = compare(expected, actual)
        totals["dlib"] += len(expected)
        totals["torch"] += len(actual)
        totals["matched"] += matched
        totals["missed"] += missed
        totals["extra"] += extra
        box_errors += boxes
        score_errors += scores

    n = len(frames)
    h, w = frames[0].shape[:2]
    print(f"MMOD parity, dlib {dlib.__version__} vs torch {torch.__version__} "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
          f"thread, {args.dtype}, upsample {args.upsample}); load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} cores)")
    print(f"clips: {', '.join(names)}")
    print(f"frames: {n} at {w}x{h}")
    print(f"dlib detections: {totals['dlib']}   torch detections: {totals['torch']}")
    print(f"matched (<= {BOX_TOLERANCE_PX} px, <= {SCORE_TOLERANCE} confidence): "
          f"{totals['matched']}   dlib unmatched: {totals['missed']}   "
          f"torch extras: {totals['extra']}")
    print(f"max box error: {max(box_errors, default=0)} px   "
          f"max confidence error: {max(score_errors, default=0.0):.2e}")
    print(f"dlib:  {dlib_wall / n:.3f} s/frame wall ({dlib_cpu / n:.3f} s CPU)")
    print(f"torch: {torch_wall / n:.3f} s/frame wall")
    print(f"ratio dlib/torch: {dlib_wall / torch_wall:.1f}x")


if __name__ == "__main__":
    main()
