"""One track per face: fast moves keep their id, a tracked box cannot collapse, and two
tracks never sit on one face (a real face moved over a canvas; the detector is scripted)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fgnet_video.face.boxes import same_face
from fgnet_video.face.detect import Detection
from fgnet_video.face.landmarks import LandmarkPredictor
from fgnet_video.face.shots import CutDetector
from fgnet_video.face.track import FaceTracker, match_score, plausible_change, search_region
from fgnet_video.media.video import read_frames

from .conftest import shared_path

SIDE = 100  # px: the face's box side on the canvas


@pytest.fixture(scope="module")
def predictor():
    return LandmarkPredictor()


@pytest.fixture(scope="module")
def face():
    """The first vox frame, scaled so its face box (~187 px) is SIDE px, and that box."""
    frame = next(iter(read_frames(shared_path("media", "vox_talking.mp4"), end=0.01))).image
    scale = SIDE / 187.0
    image = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image, (33 * scale, 45 * scale, SIDE, SIDE)


def canvas_with_face(face, x: float, y: float, size=(720, 1280)):
    """The face image pasted at (x, y) on a grey canvas; its true box there."""
    image, (bx, by, bw, bh) = face
    canvas = np.full((*size, 3), 110, np.uint8)
    h, w = image.shape[:2]
    canvas[int(y):int(y) + h, int(x):int(x) + w] = image
    return canvas, (int(x) + bx, int(y) + by, bw, bh)


class ScriptedDetector:
    """Returns, for each call, the boxes the test planned (score 1)."""

    def __init__(self, plan):
        self.plan, self.calls = plan, 0

    def __call__(self, image, small_faces=True):
        boxes = self.plan(self.calls)
        self.calls += 1
        return [Detection(tuple(map(float, b)), 1.0) for b in boxes]


def test_a_face_moving_more_than_half_its_width_a_frame_keeps_its_id(face, predictor):
    # 60 px a frame with a 100 px box: consecutive boxes overlap by IoU 0.25, below the 0.3
    # an IoU match needs; the face is detected in every frame
    frames = [canvas_with_face(face, 50 + 60 * t, 250) for t in range(15)]
    detector = ScriptedDetector(lambda call: [frames[call][1]])
    tracker = FaceTracker(detector, predictor, detect_every=1)
    ids = {f.face_id for image, _ in frames for f in tracker.update(image)}
    assert ids == {0}


def test_a_second_box_inside_a_tracked_face_starts_no_second_track(face, predictor):
    frames = [canvas_with_face(face, 400, 250) for _ in range(12)]
    true_box = frames[0][1]
    x, y, w, h = true_box
    inner = (x + w / 4, y + h / 4, w / 2, h / 2)  # IoU 0.25 with the face's box

    def plan(call):
        return [true_box] if call == 0 else [true_box, inner]

    tracker = FaceTracker(ScriptedDetector(plan), predictor, detect_every=1)
    for image, _ in frames:
        faces = tracker.update(image)
        assert [f.face_id for f in faces] == [0]


class CollapsingPredictor:
    """The real predictor, whose fits squash vertically once `after` calls have passed (as
    a predictor does when it slides off a face)."""

    def __init__(self, predictor, after: int):
        self.predictor, self.after, self.calls = predictor, after, 0

    def __call__(self, image, box):
        landmarks = self.predictor(image, box)
        self.calls += 1
        if self.calls > self.after:
            centre = landmarks.mean(axis=0)
            landmarks = centre + (landmarks - centre) * np.array([1.0, 0.5])
        return landmarks


def test_a_collapsing_fit_is_caught_and_the_box_keeps_its_shape(face, predictor):
    frames = [canvas_with_face(face, 400 + 2 * t, 250) for t in range(20)]
    detector = ScriptedDetector(lambda call: [frames[0][1]] if call == 0 else
                                [frames[min(call, 19)][1]])
    collapsing = CollapsingPredictor(predictor, after=3)
    tracker = FaceTracker(detector, collapsing, detect_every=10)
    detections_before = 0
    for t, (image, true_box) in enumerate(frames):
        faces = tracker.update(image)
        for f in faces:
            assert plausible_change(f.box, true_box), (t, f.box)
        detections_before = detector.calls
    assert detections_before > 2  # the failed shape check asked the detector again


def test_match_score_prefers_overlap_and_accepts_a_near_jump():
    box = (100.0, 100.0, 100.0, 100.0)
    assert match_score((110.0, 100.0, 100.0, 100.0), box) > 0.3  # IoU match
    near = match_score((150.0, 100.0, 100.0, 100.0), box)  # centre 50 px away, IoU 0.33
    jump = match_score((145.0, 130.0, 100.0, 100.0), box)  # IoU < 0.3, centre 54 px away
    assert near > jump > 0
    assert match_score((140.0, 100.0, 100.0, 100.0), box) > match_score(
        (145.0, 100.0, 100.0, 100.0), box)
    assert match_score((400.0, 100.0, 100.0, 100.0), box) == 0.0  # too far
    assert match_score((130.0, 110.0, 20.0, 20.0), box) == 0.0  # far too small
    assert same_face((125.0, 125.0, 50.0, 50.0), box)
    assert not same_face((180.0, 100.0, 100.0, 100.0), box)


def test_keyframes_stay_put_after_an_unscheduled_detection(face, predictor):
    # the face jumps 60 px at frame 3: its fit fails there and the detector is asked at once
    # (and again at 4, where the face's motion was extrapolated); the keyframes are still
    # 0, 5, 10 for detect_every=5, the ones `upcoming` announced
    frames = [canvas_with_face(face, 400 if t < 3 else 460, 250) for t in range(12)]
    asked = []

    def detector(image, small_faces=True):
        frame = tracker.frames_seen - 1
        asked.append(frame)
        return [Detection(tuple(map(float, frames[frame][1])), 1.0)]

    tracker = FaceTracker(detector, predictor, detect_every=5)
    tracker.update(frames[0][0])
    announced = [frame for frame, _ in tracker.upcoming(11)]
    ids = {f.face_id for image, _ in frames[1:] for f in tracker.update(image)}
    assert asked[:2] == [0, 3] and announced == [5, 10]
    assert [frame for frame in asked if frame % 5 == 0] == [0, 5, 10]
    assert ids == {0}


def test_a_shot_cut_ends_every_track(face, predictor):
    """The same face at the same place before and after a hard change of the whole frame
    (another shot: background and colours change) gets a new id after it; without the cut
    it keeps its id (the control)."""
    before, box = canvas_with_face(face, 300, 200)
    after = before.copy()
    after[before == 110] = 20  # another background...
    after = np.ascontiguousarray(after[..., ::-1])  # ...and other colours
    frames = [before] * 3 + [after] * 3
    tracker = FaceTracker(ScriptedDetector(lambda call: [box]), predictor, detect_every=1)
    ids = [[f.face_id for f in tracker.update(image)] for image in frames]
    assert ids == [[0], [0], [0], [1], [1], [1]]
    control = FaceTracker(ScriptedDetector(lambda call: [box]), predictor, detect_every=1)
    control._cuts.threshold = float("inf")
    assert [[f.face_id for f in control.update(image)] for image in frames] == [[0]] * 6


@pytest.mark.parametrize("clip, cuts", [("phone_cut_vfr.mov", [72, 73]),
                                        ("webcam_lamp.wmv", []), ("vox_talking.mp4", []),
                                        ("sample_disfa.avi", [])])
def test_cuts_are_found_where_the_shot_changes_and_nowhere_else(clip, cuts):
    """The phone clip cuts from a face to a title (its frame 72 is the first of a two-frame
    change); a lamp sweeping light over a face, a talking head and a lab recording have none."""
    detector = CutDetector()
    found = [f.index for f in read_frames(shared_path("media", clip))
             if detector.is_cut(f.image)]
    assert found == cuts


@pytest.mark.parametrize("same_person", [True, False])
def test_a_lost_face_found_elsewhere_resumes_its_track_when_it_is_the_same_person(
        face, predictor, same_person):
    """The face is tracked, vanishes for 5 frames (its track is lost, not forgotten), and is
    detected again 800 px away, where no position can match it: its track resumes when
    `reidentify` says it is the lost face, else a new id starts."""
    empty = (np.full((720, 1280, 3), 110, np.uint8), None)
    frames = ([canvas_with_face(face, 100, 250)] * 5 + [empty] * 5
              + [canvas_with_face(face, 900, 250)] * 5)
    asked = []

    def reidentify(image, faces, lost, present):
        asked.append((len(faces), lost, present))
        return [lost[0] if same_person else None for _ in faces]

    def plan(call):
        return [] if 5 <= call < 10 else [frames[call][1]]

    tracker = FaceTracker(ScriptedDetector(plan), predictor, detect_every=1,
                          reidentify=reidentify)
    ids = [[f.face_id for f in tracker.update(image)] for image, _ in frames]
    assert ids[:5] == [[0]] * 5 and ids[5:10] == [[]] * 5
    assert ids[10:] == ([[0]] if same_person else [[1]]) * 5
    assert asked == [(1, [0], [])]  # asked once: a new face while a face was lost


def test_a_cnn_re_detects_around_the_tracked_faces_only(face, predictor):
    """Two faces; one jumps 60 px at frame 3 and fails its checks (and at 4, as in the test
    above). A detector with `local_redetection` (the CNN) is then asked about the region
    around each tracked face, not the whole frame; the jumped face is found in its region
    and both keep their ids. The keyframes still scan the whole frame."""
    def frame(t):
        left, left_box = canvas_with_face(face, 200, 250)
        right, right_box = canvas_with_face(face, 800 if t < 3 else 860, 250)
        left[:, 640:] = right[:, 640:]
        return left, [left_box, right_box]

    frames = [frame(t) for t in range(8)]
    detector = _LocalDetector(frames, lambda: tracker.frames_seen - 1)
    tracker = FaceTracker(detector, predictor, detect_every=5)
    ids = [[(f.face_id, f.detected) for f in tracker.update(image)] for image, _ in frames]
    assert detector.whole == [0, 5]
    assert [t for t, _, _ in detector.regions] == [3, 3, 4, 4]  # 4: motion extrapolated
    regions = [region for t, region, _ in detector.regions if t == 3]
    for (x0, y0, x1, y1), (bx, by, bw, bh) in zip(regions, frames[3][1], strict=True):
        assert x0 <= bx and bx + bw <= x1 and y0 <= by and by + bh <= y1
        assert x1 - x0 < 400  # around the face, not the frame
    assert not any(small for _, _, small in detector.regions)  # 100 px: the first pass
    assert ids[3] == [(0, True), (1, True)]
    assert [[i for i, _ in faces] for faces in ids] == [[0, 1]] * 8


def test_a_region_s_detection_that_is_no_tracked_face_starts_no_track(face, predictor):
    """A region also shows part of its surroundings: there a face new since the keyframe
    waits for the next keyframe (a whole-frame scan) rather than starting a track from a
    region's edge."""
    frames = [canvas_with_face(face, 400 if t < 3 else 460, 250) for t in range(7)]
    stranger = (330.0, 180.0, 40.0, 40.0)  # in the region at frame 3, far from the face
    frames = [(image, [box] if t < 5 else [box, stranger]) for t, (image, box)
              in enumerate(frames)]
    detector = _LocalDetector(frames, lambda: tracker.frames_seen - 1)
    detector.extra = [stranger]
    tracker = FaceTracker(detector, predictor, detect_every=5)
    ids = [[f.face_id for f in tracker.update(image)] for image, _ in frames]
    x0, y0, x1, y1 = detector.regions[0][1]
    assert detector.regions[0][0] == 3 and x0 <= 330 and 370 <= x1 and y0 <= 180 and 220 <= y1
    assert ids == [[0]] * 5 + [[0, 1]] * 2  # the stranger's track starts at the keyframe


def test_a_face_not_in_its_search_region_is_looked_for_in_the_whole_frame(face, predictor):
    """The face jumps 500 px at frame 3, out of its search region: the whole frame is
    scanned there, and the faces and ids are those of a detector without local
    re-detection (too far to be the same track: a new one)."""
    frames = [canvas_with_face(face, 200 if t < 3 else 700, 250) for t in range(6)]
    frames = [(image, [box]) for image, box in frames]
    detector = _LocalDetector(frames, lambda: tracker.frames_seen - 1)
    detector.small_face_side = 120.0  # the 100 px face is one only the small pass finds
    tracker = FaceTracker(detector, predictor, detect_every=5)
    found = [[(f.face_id, f.box) for f in tracker.update(image)] for image, _ in frames]
    assert [(t, small) for t, _, small in detector.regions] == [(3, True)]
    assert detector.whole == [0, 3, 5]
    whole = ScriptedDetector(lambda call: [frames[[0, 3, 5][call]][1][0]])
    tracker = FaceTracker(whole, predictor, detect_every=5)
    assert [[(f.face_id, f.box) for f in tracker.update(image)] for image, _ in frames] == found
    assert [[i for i, _ in faces] for faces in found] == [[0]] * 3 + [[1]] * 3


class _LocalDetector:
    """A scripted detector with `local_redetection`: the boxes of `frames[t]` (the frame
    being tracked: `now()`) in the whole frame, or those inside a region."""

    local_redetection = True
    small_face_side = 80.0

    def __init__(self, frames, now):
        self.frames, self.now = frames, now
        self.whole, self.regions = [], []
        self.extra = []  # boxes a region also shows, whatever the frame

    def __call__(self, image, small_faces=True):
        self.whole.append(self.now())
        return [Detection(tuple(map(float, b)), 1.0) for b in self.frames[self.now()][1]]

    def in_region(self, image, region, small_faces=True):
        self.regions.append((self.now(), region, small_faces))
        x0, y0, x1, y1 = region
        return [Detection(tuple(map(float, b)), 1.0)
                for b in [*self.frames[self.now()][1], *self.extra]
                if x0 <= b[0] and b[0] + b[2] <= x1 and y0 <= b[1] and b[1] + b[3] <= y1]


def test_the_search_region_widens_the_box_by_a_side_within_the_frame():
    """...starting on the CNN's 8 px grid, so its windows there are the frame's."""
    assert search_region((100.0, 200.0, 50.0, 60.0), 1280, 720) == (40, 136, 210, 320)
    assert search_region((-10.0, 680.0, 40.0, 40.0), 1280, 720) == (0, 640, 70, 720)
    past = search_region((1400.0, 800.0, 40.0, 40.0), 1280, 720)  # predicted off the frame
    assert past == (1272, 712, 1280, 720)  # a sliver of the frame, never an empty crop
