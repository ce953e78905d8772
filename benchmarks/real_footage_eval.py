"""The face stage on real multi-person recordings made by others, against the ground truth
counted by looking at frames (benchmarks/real_footage: ground_truth.json and its README).

    python benchmarks/real_footage_eval.py [--detectors hog cnn] [--dlib-seconds 1]
        [--clips DIR ...]

Each clip of ground_truth.json (found next to it, or in a --clips folder: the
licence-restricted excerpts that make_excerpts.py writes outside the repository) runs
through the face stage as `analyze` runs it (FacePipeline, default settings but the
detector), every frame, one torch thread. On the annotated frames a found box is matched to
an annotated face when their IoU is at least MATCH_IOU (the annotations are drawn by hand,
to about 10%), greedily by IoU. Per clip and detector it prints:

- recall: annotated faces found / annotated faces; also for faces of 60 px and more, and
  for three-quarter and profile faces;
- false positives: found boxes matched to no annotated face (on annotated frames), but for
  those whose centre lies in one of the frame's `ignore` regions (a head turned away, a
  face under 40 px, a distant crowd: neither required nor wrong);
- tracks per person: distinct face ids matched to one annotated person, mean over people;
  and per shot: distinct face ids matched to one person within one shot (between the clip's
  annotated `cuts`), mean over the (person, shot) pairs where the person is found. A shot
  cut ends every track on purpose, so a person seen in three shots has three tracks at
  least; the per-shot figure is the one a perfect tracker brings to 1.00 on every clip;
- person ids per person: distinct person ids matched to one annotated person (the target:
  1 on clips where each person is seen frontally at least once, marked "everyone frontal":
  a pose annotated `frontal` on one of the person's faces), and shared ids: person ids
  matched to two or more annotated people (the target: 0);
- cost: face-stage milliseconds per frame (wall, decode excluded).

dlib's own CNN detector costs seconds a frame on a CPU, so it runs on the first
--dlib-seconds of each clip only, beside the torch CNN on the same frames: the two must find
the same faces there (the torch network is dlib's, to the pixel: benchmarks/mmod_parity.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

from fgnet_video.face.boxes import box_iou

HERE = Path(__file__).resolve().parent / "real_footage"
MATCH_IOU = 0.3


def in_any(box, regions) -> bool:
    """Whether the centre of `box` lies in one of the (x, y, w, h) `regions`."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return any(x <= cx <= x + w and y <= cy <= y + h for x, y, w, h in regions)


def match(truth: list[dict], found: list) -> list[tuple[int, int]]:
    """(annotated index, found index) pairs, greedily by IoU >= MATCH_IOU."""
    pairs = sorted(((box_iou(t["box"], f.box), i, j) for i, t in enumerate(truth)
                    for j, f in enumerate(found)), reverse=True)
    used_t, used_f, matched = set(), set(), []
    for score, i, j in pairs:
        if score < MATCH_IOU:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            matched.append((i, j))
    return matched


def dlib_cnn_detector(min_face_size: float):
    """A FaceDetector that runs dlib's own CNN (for this comparison only)."""
    import dlib

    from fgnet_video.face.detect import FaceDetector
    from fgnet_video.face.landmarks import CNN_DETECTOR_MODEL, model_file

    class DlibCnn(FaceDetector):
        def __init__(self) -> None:
            super().__init__("hog", min_face_size=min_face_size)
            self.kind = "dlib-cnn"
            self._dlib = dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR_MODEL)))

        def _run(self, images, largest=float("inf")):  # dlib scans its whole pyramid
            return [[((float(d.rect.left()), float(d.rect.top()), float(d.rect.width()),
                       float(d.rect.height())), d.confidence)
                     for d in self._dlib(image, 0) if d.confidence >= self.threshold]
                    for image in images]

    return DlibCnn()


def run_clip(path: Path, detector: str, seconds: float | None) -> tuple[dict, float, int]:
    """{frame index: faces} of the face stage over the clip (its first `seconds` when
    given), the face stage's wall seconds, and the frames seen."""
    from fgnet_video.face.pipeline import FacePipeline
    from fgnet_video.media.video import read_frames
    from fgnet_video.options import FaceSettings

    settings = FaceSettings(detector="hog" if detector == "dlib-cnn" else detector)
    pipeline = FacePipeline(settings)
    if detector == "dlib-cnn":
        pipeline.tracker.detector = dlib_cnn_detector(settings.min_face_size)
    faces, spent, count = {}, 0.0, 0
    for frame in read_frames(path, end=seconds):
        started = time.perf_counter()
        faces[frame.index] = pipeline.process(frame)
        spent += time.perf_counter() - started
        count += 1
    return faces, spent, count


def score(clip: dict, faces: dict) -> dict:
    """The module docstring's figures for one clip's faces."""
    total = found = big = big_found = turned = turned_found = false = 0
    tracks, persons, shot_tracks = defaultdict(set), defaultdict(set), defaultdict(set)
    for frame in clip["annotated"]:
        if frame["frame"] not in faces:
            continue
        truth, seen = frame["faces"], faces[frame["frame"]]
        pairs = match(truth, seen)
        total += len(truth)
        found += len(pairs)
        matched = {j for _, j in pairs}
        false += sum(1 for j, f in enumerate(seen)
                     if j not in matched and not in_any(f.box, frame.get("ignore", [])))
        for t in truth:
            big += min(t["box"][2:]) >= 60
            turned += t.get("pose", "frontal") != "frontal"
        for i, j in pairs:
            t, f = truth[i], seen[j]
            big_found += min(t["box"][2:]) >= 60
            turned_found += t.get("pose", "frontal") != "frontal"
            tracks[t["person"]].add(f.face_id)
            shot_tracks[t["person"], shot_of(clip.get("cuts", []), frame["frame"])].add(f.face_id)
            persons[t["person"]].add(f.person_id)
    owners = defaultdict(set)
    for person, ids in persons.items():
        for pid in ids:
            owners[pid].add(person)
    people = max(len(tracks), 1)
    return {"faces": total, "recall": found / max(total, 1),
            "recall_60px": big_found / max(big, 1), "faces_60px": big,
            "recall_turned": turned_found / max(turned, 1), "turned": turned,
            "false_positives": false,
            "tracks_per_person": sum(len(v) for v in tracks.values()) / people,
            "tracks_per_person_shot": (sum(len(v) for v in shot_tracks.values())
                                       / max(len(shot_tracks), 1)),
            "person_ids_per_person": sum(len(v) for v in persons.values()) / people,
            "shared_person_ids": sum(1 for v in owners.values() if len(v) > 1),
            "people_found": len(tracks), "people": len(clip.get("people", {})),
            "everyone_frontal": everyone_frontal(clip)}


def shot_of(cuts: list[int], frame: int) -> int:
    """The shot (0, 1, ...) of `frame`: the number of `cuts` (the first frame of each new
    shot) at or before it."""
    return sum(1 for cut in cuts if cut <= frame)


def everyone_frontal(clip: dict) -> bool:
    """Whether each annotated person of `clip` has a face annotated `frontal` (the clips the
    issue's person-id target is set for)."""
    poses = defaultdict(set)
    for frame in clip["annotated"]:
        for face in frame["faces"]:
            poses[face["person"]].add(face.get("pose", "frontal"))
    return all("frontal" in seen for seen in poses.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", nargs="+", default=["hog", "cnn"])
    parser.add_argument("--dlib-seconds", type=float, default=1.0)
    parser.add_argument("--clips", nargs="*", default=[], type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    truth = json.loads((HERE / "ground_truth.json").read_text())
    folders = [HERE, *args.clips]
    print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores), torch "
          f"{torch.__version__}, one thread")
    report = []
    for clip in truth["clips"]:
        path = next((f / clip["file"] for f in folders if (f / clip["file"]).is_file()), None)
        if path is None:
            print(f"{clip['file']}: not here (licence-restricted: make_excerpts.py)")
            continue
        for detector in args.detectors:
            faces, spent, count = run_clip(path, detector, None)
            row = {"clip": clip["file"], "detector": detector, "frames": count,
                   "ms_per_frame": 1000 * spent / count, **score(clip, faces)}
            report.append(row)
            print(f"{clip['file']:<26} {detector:<8} recall {row['recall']:.2f} "
                  f"(>=60px {row['recall_60px']:.2f} of {row['faces_60px']}, turned "
                  f"{row['recall_turned']:.2f} of {row['turned']}) of {row['faces']} faces, "
                  f"FP {row['false_positives']}, tracks/person {row['tracks_per_person']:.2f} "
                  f"(per shot {row['tracks_per_person_shot']:.2f}), "
                  f"ids/person {row['person_ids_per_person']:.2f}"
                  f"{' (everyone frontal)' if row['everyone_frontal'] else ''}, shared ids "
                  f"{row['shared_person_ids']}, people {row['people_found']}/{row['people']}, "
                  f"{row['ms_per_frame']:.0f} ms/frame")
        if args.dlib_seconds > 0:
            mine, t_torch, n = run_clip(path, "cnn", args.dlib_seconds)
            theirs, t_dlib, _ = run_clip(path, "dlib-cnn", args.dlib_seconds)
            same = all([(f.face_id, f.box) for f in mine[k]] == [(f.face_id, f.box)
                                                                 for f in theirs[k]]
                       for k in mine)
            print(f"{clip['file']:<26} first {args.dlib_seconds:g} s ({n} frames): dlib CNN "
                  f"{1000 * t_dlib / n:.0f} ms/frame, torch CNN {1000 * t_torch / n:.0f} "
                  f"ms/frame ({t_dlib / t_torch:.1f}x); same faces and ids: {same}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
