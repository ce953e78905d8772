"""The face stage on the whole source recordings behind the real-footage excerpts: longer
and larger than the annotated excerpts (benchmarks/real_footage), with the people counted by
looking at frames.

    python benchmarks/whole_sources.py [--detectors cnn hog] [--sources NAME ...]
        [--mirrors /work/.mirror]

The excerpts hold 4-10 s of each recording, scaled; a real study runs whole recordings at
their own size, where a person turns away for longer, comes back after more cuts, and faces
span more pixels. Each source in SOURCES is read from a bare git mirror of its repository
(`make_excerpts.read_source`: the repository, commit and path of the excerpt, nothing
stored here; two are licence-restricted), written to a temporary file, and run through the
face stage as `analyze` runs it (FacePipeline, default settings but the detector), every
frame, one torch thread. Per source and detector it prints: frames and size, faces per
frame, face tracks, person ids, the people counted by eye (PEOPLE), shots (by the face
stage's cut detector: a track cannot outlive one), tracks per shot in which a person was
tracked (the cut rule's floor is 1.00), and face-stage milliseconds per frame.

The excerpt's annotated frames lie inside each source (its `first_frame` on, its boxes
scaled by the source's width over the excerpt's), so the run is also scored against the
ground truth there (`real_footage_eval.score`: recall, false positives, tracks and person
ids per annotated person), now with the tracks and ids the whole recording gave them.
Elsewhere there is no box-level ground truth: whether a track or an id is one person is
checked by looking at the overlay (`analyze --overlay`), as RESULTS.md reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "real_footage"))
sys.path.insert(0, str(HERE))

from make_excerpts import CLIPS, read_source  # noqa: E402
from real_footage_eval import score, shot_of  # noqa: E402

# excerpt name: (what the whole source is, people seen in it, counted by looking at frames)
SOURCES = {
    "walk_opera": ("the excerpt's frames at the source's 1920x1080", 10),
    "openface_multi": ("all 702 frames (the excerpt: 300)", 3),
    "friends_poker": ("all 632 frames (the excerpt: 240)", 6),
}


def run(path: Path, detector: str) -> tuple[dict, float, int, list[int]]:
    """({frame: faces}, face-stage seconds, frames, [first frame of each shot after the
    first]) of the face stage over the whole file."""
    from fgnet_video.face.pipeline import FacePipeline
    from fgnet_video.face.shots import CutDetector
    from fgnet_video.media.video import read_frames
    from fgnet_video.options import FaceSettings

    pipeline = FacePipeline(FaceSettings(detector=detector))
    cut_detector, cuts = CutDetector(), []
    faces, spent = {}, 0.0
    for frame in read_frames(path):
        started = time.perf_counter()
        faces[frame.index] = pipeline.process(frame)
        spent += time.perf_counter() - started
        if cut_detector.is_cut(frame.image):
            cuts.append(frame.index)
    return faces, spent, len(faces), cuts


def summary(faces: dict, cuts: list[int]) -> dict:
    """Faces, tracks, person ids, and tracks per (person id, shot) of one run."""
    tracks_of = defaultdict(set)  # (person id, shot) -> face ids
    tracks, persons, total = set(), set(), 0
    for index, found in faces.items():
        shot = shot_of(cuts, index)
        for face in found:
            total += 1
            tracks.add(face.face_id)
            persons.add(face.person_id)
            tracks_of[face.person_id, shot].add(face.face_id)
    return {"faces": total, "tracks": len(tracks), "person_ids": len(persons),
            "tracks_per_shot": sum(map(len, tracks_of.values())) / max(len(tracks_of), 1)}


def in_source(clip: dict, first_frame: int, scale: float) -> dict:
    """The annotations of an excerpt (ground_truth.json's `clip`) in its source's frames:
    frame numbers from `first_frame` on, boxes and ignore regions scaled by `scale`."""
    def scaled(box: list[float]) -> list[float]:
        return [v * scale for v in box]

    frames = [{**frame, "frame": frame["frame"] + first_frame,
               "faces": [{**face, "box": scaled(face["box"])} for face in frame["faces"]],
               "ignore": [scaled(region) for region in frame.get("ignore", [])]}
              for frame in clip["annotated"]]
    return {**clip, "annotated": frames, "cuts": [c + first_frame for c in clip["cuts"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", nargs="+", default=["cnn", "hog"])
    parser.add_argument("--sources", nargs="+", choices=sorted(SOURCES), default=list(SOURCES))
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    args = parser.parse_args()
    import torch

    from fgnet_video.media.video import probe

    torch.set_num_threads(1)
    truth = {Path(clip["file"]).stem: clip for clip in
             json.loads((HERE / "real_footage" / "ground_truth.json").read_text())["clips"]}
    print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores), torch "
          f"{torch.__version__}, one thread")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sources:
            what, people = SOURCES[name]
            spec = CLIPS[name]
            path = Path(tmp) / f"{name}{Path(spec['path']).suffix}"
            path.write_bytes(read_source(spec, args.mirrors, {}))
            info = probe(path)
            print(f"{name}: {spec['repo']}:{spec['path']}, {what}: {info.width}x{info.height}, "
                  f"{people} people")
            for detector in args.detectors:
                faces, spent, count, cuts = run(path, detector)
                row = summary(faces, cuts)
                print(f"  {detector:<4} {count} frames, {len(cuts) + 1} shots: "
                      f"{row['faces'] / count:.2f} faces/frame, {row['tracks']} tracks "
                      f"({row['tracks_per_shot']:.2f} per person id and shot), "
                      f"{row['person_ids']} person ids for {people} people, "
                      f"{1000 * spent / count:.0f} ms/frame")
                excerpt = truth[name]
                row = score(in_source(excerpt, spec["first_frame"],
                                      info.width / excerpt["width"]), faces)
                print(f"       on the excerpt's annotated frames: recall {row['recall']:.2f}, "
                      f"FP {row['false_positives']}, tracks/person "
                      f"{row['tracks_per_person']:.2f} (per shot "
                      f"{row['tracks_per_person_shot']:.2f}), ids/person "
                      f"{row['person_ids_per_person']:.2f}, shared ids "
                      f"{row['shared_person_ids']}")


if __name__ == "__main__":
    main()
