"""Face finding and tracking on multi-person clips with known ground truth.

    python benchmarks/multi_face.py                       # today's defaults vs alternatives
    python benchmarks/multi_face.py --setting min_face_size=80 --setting min_face_size=40

Real faces, composed: each clip is built from the single-face recordings in ../shared/media
(talking, webcam with a moving lamp, phone clip, lab recording), each cut out around its face
with a fixed square crop, scaled and placed on one canvas, and played in a loop (forward then
backward, so motion stays continuous). Where each face is in every composed frame follows
from where it is in its source frame (found there at full size, where one large frontal
face is easy) through the crop, scale and placement, so recall, tracks per person and
duplicates are counted exactly, not by eye:

    desk_640x480      three people side by side, faces of about 95, 70 and 50 px
    crossing_1280x720 one face of ~120 px crossing the frame at 24 px per frame, two still
                      faces of ~80 and ~45 px
    webcam_320x240    one face zooming between ~75 and ~50 px on a 320x240 frame
    fast_1280x720     two faces of ~110 and ~90 px moving at 40 and 30 px per frame in
                      opposite directions, passing each other

For each --setting (FaceSettings fields, e.g. `min_face_size=40,detect_every=5`; the first
is the baseline of the cost ratio), in one run: recall (ground-truth face-frames with a
tracked box of IoU >= 0.3), tracks per person (distinct face ids matched to one person over
the clip; 1 is ideal), duplicate face-frames (two boxes on one face), unmatched boxes (false
or missed-by-truth faces), and the face stage's CPU ms per frame (detection, tracking,
landmarks; alignment excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np

from fgnet_video.face.boxes import box_iou
from fgnet_video.media.video import Frame, read_frames
from fgnet_video.options import FaceSettings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MATCH_IOU = 0.3
MIN_TRUE_FACE = 36.0  # px: smaller ground-truth faces are not counted in the recall


@dataclass(frozen=True)
class Source:
    """A single-face recording, its frames and its face box per frame (x, y, w, h)."""

    name: str
    frames: list[np.ndarray]
    boxes: list[tuple[float, float, float, float] | None]

    def crop(self, margin: float = 2.2) -> tuple[float, float, float]:
        """Fixed square crop (left, top, side) around the median face."""
        known = np.array([b for b in self.boxes if b is not None])
        cx = float(np.median(known[:, 0] + known[:, 2] / 2))
        cy = float(np.median(known[:, 1] + known[:, 3] / 2))
        side = float(np.median(known[:, 2])) * margin
        return cx - side / 2, cy - side / 2, side

    def face_side(self) -> float:
        return float(np.median([b[2] for b in self.boxes if b is not None]))


def load_source(name: str, limit: int | None = None) -> Source:
    """Frames of ../shared/media/NAME and the largest face's box in each (detected in every
    frame at full size)."""
    from fgnet_video.face.pipeline import FacePipeline

    frames, boxes = [], []
    pipeline = FacePipeline(FaceSettings(detect_every=1, min_face_size=60))
    for frame in read_frames(SHARED / "media" / name):
        if limit is not None and len(frames) >= limit:
            break
        faces = pipeline.track(frame)
        frames.append(frame.image)
        boxes.append(max((f.box for f in faces), key=lambda b: b[2] * b[3]) if faces else None)
    return Source(name, frames, boxes)


@dataclass(frozen=True)
class Placement:
    """A source's face on the canvas: crop scaled so the face is `face` px, its crop's
    top-left corner at (x, y) + t * (dx, dy) in composed frame t; zoom oscillates the scale
    by that factor (1: none) over `period` frames."""

    source: str
    face: float
    x: float
    y: float
    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 1.0
    period: int = 60


CLIPS = {
    "desk_640x480": ((640, 480), 100, [Placement("vox_talking.mp4", 95, 10, 120),
                                       Placement("webcam_lamp.wmv", 70, 250, 150),
                                       Placement("phone_cut_vfr.mov", 50, 470, 180)]),
    "crossing_1280x720": ((1280, 720), 100, [Placement("vox_talking.mp4", 120, -200, 200, 24),
                                             Placement("webcam_lamp.wmv", 80, 300, 40),
                                             Placement("phone_cut_vfr.mov", 45, 1000, 60)]),
    "webcam_320x240": ((320, 240), 100, [Placement("webcam_lamp.wmv", 75, 60, 20, zoom=0.66)]),
    "fast_1280x720": ((1280, 720), 60, [Placement("vox_talking.mp4", 110, -150, 250, 40, -3),
                                        Placement("webcam_lamp.wmv", 90, 900, 380, -30, 0)]),
}


def _looped(n: int, t: int) -> int:
    """Frame of an n-frame source at composed frame t: forward, then backward, repeated."""
    if n == 1:
        return 0
    cycle = 2 * n - 2
    k = t % cycle
    return k if k < n else cycle - k


def compose(clip: str, sources: dict[str, Source]) -> tuple[list[np.ndarray], list[list]]:
    """The composed frames and, per frame, the true boxes [(person, box or None)]."""
    (width, height), length, placements = CLIPS[clip]
    frames, truth = [], []
    for t in range(length):
        canvas = np.full((height, width, 3), 96, np.uint8)
        faces = []
        for person, p in enumerate(placements):
            source = sources[p.source]
            k = _looped(len(source.frames), t)
            left, top, side = source.crop()
            zoom = 1.0 + (p.zoom - 1.0) * 0.5 * (1 - np.cos(2 * np.pi * t / p.period))
            scale = p.face * zoom / source.face_side()
            # the crop, scaled, with its top-left corner at (ox, oy) on the canvas
            ox, oy = p.x + p.dx * t, p.y + p.dy * t
            matrix = np.array([[scale, 0, ox - left * scale], [0, scale, oy - top * scale]])
            size = int(round(side * scale))
            patch = cv2.warpAffine(source.frames[k], matrix, (width, height),
                                   flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
            mask = np.zeros((height, width), bool)
            x0, y0 = max(int(ox), 0), max(int(oy), 0)
            mask[y0:max(int(oy) + size, 0), x0:max(int(ox) + size, 0)] = True
            canvas[mask] = patch[mask]
            box = source.boxes[k]
            if box is not None:
                box = (box[0] * scale + matrix[0, 2], box[1] * scale + matrix[1, 2],
                       box[2] * scale, box[3] * scale)
                inside = (box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= width
                          and box[1] + box[3] <= height)
                box = box if inside else None
            faces.append((person, box))
        frames.append(canvas)
        truth.append(faces)
    return frames, truth


def run_face_stage(frames: list[np.ndarray], settings: FaceSettings
                   ) -> tuple[list[list], float]:
    """Tracked (face_id, box) per frame and CPU ms per frame of the face stage (tracking and
    person ids, which lost tracks resume by: `FacePipeline.locate`; no alignment)."""
    from fgnet_video.face.pipeline import FacePipeline

    pipeline = FacePipeline(settings)
    found = []
    started = time.process_time()
    for index, image in enumerate(frames):
        found.append([(f.face_id, f.box) for f, _, _ in
                      pipeline.locate(Frame(index, index / 25.0, image))])
    return found, 1e3 * (time.process_time() - started) / len(frames)


def score(truth: list[list], found: list[list]) -> dict:
    """Recall, tracks per person, duplicates and unmatched boxes (see module docstring)."""
    counted = matched = duplicates = unmatched = 0
    ids: dict[int, set[int]] = {}
    per_person: dict[int, list[int]] = {}  # person -> [matched, counted]
    for faces, boxes in zip(truth, found, strict=True):
        used = set()
        for person, box in faces:
            if box is None or min(box[2], box[3]) < MIN_TRUE_FACE:
                continue
            counted += 1
            tally = per_person.setdefault(person, [0, 0])
            tally[1] += 1
            hits = [(face_id, i) for i, (face_id, b) in enumerate(boxes)
                    if box_iou(box, b) >= MATCH_IOU]
            if hits:
                matched += 1
                tally[0] += 1
                duplicates += len(hits) > 1
                ids.setdefault(person, set()).update(face_id for face_id, _ in hits)
                used.update(i for _, i in hits)
        unmatched += sum(1 for i in range(len(boxes)) if i not in used)
    people = len({p for faces in truth for p, box in faces if box is not None})
    return {"recall": matched / counted if counted else float("nan"),
            "face_frames": counted,
            "tracks_per_person": (sum(len(v) for v in ids.values()) / len(ids)
                                  if ids else float("nan")),
            "people_found": f"{len(ids)}/{people}",
            "recall_per_person": "/".join(f"{100 * m / n:.0f}" for _, (m, n) in
                                          sorted(per_person.items())),
            "duplicates": duplicates, "unmatched": unmatched}


def parse_setting(text: str) -> FaceSettings:
    """`name=value,name=value` over FaceSettings' fields ('' is the defaults)."""
    names = {f.name for f in fields(FaceSettings)}
    changes = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in names:
            raise SystemExit(f"unknown FaceSettings field {name!r}")
        default = getattr(FaceSettings(), name)
        changes[name] = (type(default)(value) if default is not None
                         else (None if value == "none" else float(value)))
    return replace(FaceSettings(), **changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", action="append", default=None,
                        help="FaceSettings changes, e.g. min_face_size=40 (repeatable; "
                        "default: today's defaults only)")
    parser.add_argument("--clips", default=",".join(CLIPS))
    parser.add_argument("--save", metavar="DIR", help="also write the composed clips (MP4) and "
                        "the scores (JSON) there")
    args = parser.parse_args(argv)
    settings = args.setting or [""]
    print(f"machine: {platform.processor() or 'cpu'}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; CPU ms per frame from process time")
    names = {p.source for clip in args.clips.split(",") for p in CLIPS[clip][2]}
    sources = {name: load_source(name, limit=72 if name == "phone_cut_vfr.mov" else None)
               for name in sorted(names)}  # the phone clip cuts to a title at frame 72
    results = []
    print("| clip | setting | recall | recall per person (%) | people found | tracks per person "
          "| duplicates | unmatched boxes | ms/frame | cost vs first |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for clip in args.clips.split(","):
        frames, truth = compose(clip, sources)
        base = None
        for text in settings:
            found, ms = run_face_stage(frames, parse_setting(text))
            result = {"clip": clip, "setting": text or "defaults", "ms_per_frame": ms,
                      **score(truth, found)}
            base = base or ms
            results.append(result)
            print(f"| {clip} | {result['setting']} | {result['recall']:.1%} | "
                  f"{result['recall_per_person']} | {result['people_found']} | "
                  f"{result['tracks_per_person']:.2f} | "
                  f"{result['duplicates']} | {result['unmatched']} | {ms:.1f} | "
                  f"{ms / base:.2f}x |", flush=True)
        if args.save:
            _save(Path(args.save), clip, frames)
    if args.save:
        (Path(args.save) / "scores.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _save(folder: Path, clip: str, frames: list[np.ndarray]) -> None:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(folder / f"{clip}.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())


if __name__ == "__main__":
    sys.exit(main())
