"""The face stage on a stored excerpt of a real multi-person recording made by others
(benchmarks/real_footage: walk_opera, a crowd walking towards the camera), against its
ground truth counted by looking at frames. The full evaluation, all six clips and HOG
beside the CNN, is `benchmarks/real_footage_eval.py`; this guards what it found."""

from __future__ import annotations

import json

from fgnet_video.face.boxes import box_iou
from fgnet_video.face.pipeline import FacePipeline
from fgnet_video.media.video import read_frames
from fgnet_video.options import FaceSettings

from .conftest import REPO

FOOTAGE = REPO / "benchmarks" / "real_footage"


def test_people_missed_for_a_few_frames_keep_their_track_on_real_footage():
    """The first 13 frames of walk_opera with the CNN: the 46-50 px face of the young man
    in the centre (B) is lost after frame 1 and found again at the keyframe 10, having
    walked on; by appearance its track resumes (before: a second track). Every person
    found on both annotated frames, 0 and 12, keeps one track and one person id."""
    clip = next(c for c in json.loads((FOOTAGE / "ground_truth.json").read_text())["clips"]
                if c["file"] == "walk_opera.mp4")
    truth = {f["frame"]: f["faces"] for f in clip["annotated"] if f["frame"] in (0, 12)}
    pipeline = FacePipeline(FaceSettings(detector="cnn"))
    ids: dict[str, set[tuple[int, int | None]]] = {}
    for frame in read_frames(FOOTAGE / clip["file"], end=12.5 / clip["fps"]):
        faces = pipeline.process(frame)
        for person in truth.get(frame.index, []):
            best = max(faces, key=lambda f: box_iou(f.box, person["box"]), default=None)
            if best is not None and box_iou(best.box, person["box"]) >= 0.3:
                ids.setdefault(person["person"], set()).add((best.face_id, best.person_id))
    assert frame.index == 12
    assert {"A", "B", "C"} <= set(ids)  # the three largest faces are found
    assert all(len(found) == 1 for found in ids.values()), ids


def test_the_cnn_finds_a_face_in_its_search_region_as_in_the_whole_frame():
    """A face that fails its tracking checks is looked for in its search region only
    (`FaceTracker._detect_around`); on real frames of walk_opera (faces of 80 px and of
    40-80 px, small-face pass) the region gives the whole frame's box and score."""
    from fgnet_video.face.detect import FaceDetector
    from fgnet_video.face.track import search_region

    detector = FaceDetector("cnn")
    compared = 0
    for frame in read_frames(FOOTAGE / "walk_opera.mp4", end=2.5):
        if frame.index % 30:
            continue
        height, width = frame.image.shape[:2]
        for face in detector(frame.image):
            small = min(face.box[2:]) < detector.small_face_side
            region = search_region(face.box, width, height)
            again = detector.in_region(frame.image, region, small_faces=small)
            best = max(again, key=lambda d: box_iou(d.box, face.box))
            assert box_iou(best.box, face.box) > 0.99
            assert abs(best.score - face.score) < 1e-3
            compared += 1
    assert compared >= 3
