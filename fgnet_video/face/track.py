"""Face tracking between detections by landmark propagation, with stable face ids.

The detector runs on the clip's keyframes, frames 0, N, 2N, ... for N = `detect_every` (a
fixed schedule, so the detections can be prepared ahead: `upcoming`), on every frame while
no face is tracked, and whenever a tracked face fails its consistency checks; its small-face
pass (see `fgnet_video.face.detect`) at most every `detect_every` frames. In between, each face's
box in the new frame is the box implied by its landmarks of the previous frame, and the
68-point predictor refits the landmarks inside it.

Why landmark propagation rather than e.g. dlib.correlation_tracker: the landmarks are needed
on every frame anyway, so the box costs nothing extra and follows scale, rotation and
non-rigid motion; a correlation tracker would add several ms per face per frame and drift in
scale. Its weakness, a predictor that happily fits a face-shaped set of points to anything, is
covered by two cheap checks per frame: the box implied by the refitted landmarks must agree
with the box they were fitted in (IoU), and a 32x32 grey patch of the aligned face must still
correlate with the previous frame's (normalised cross-correlation). A failed check triggers
a detection on the same frame: of the whole frame with HOG (exactly as before), and with the
CNN (`local_redetection`) only around the tracked faces (`search_region`: each box widened by
one box side on every side, with the small-face pass for a face under 80 px), where a whole
720p frame costs it 220-640 ms and in crowds a third of the frames have a face failing a
check; in the whole frame when a failing face is not found around its box.

A third check keeps a tracked box from collapsing or drifting: its aspect (h / w) must stay
within [1/1.4, 1.4] x the aspect at the face's last detection and its area within [0.5, 2] x
that detection's area.

Motion: a face moving fast (over 0.1 box side a frame) is predicted at its last position plus
its last per-frame motion of the box centre (constant velocity), so the landmarks are
refitted where it is now; slower faces are refitted where they were.

Ids: detections are matched to tracked faces (and to recently lost ones) greedily from the
best match, where a pair matches by IoU >= 0.3 with the face's predicted box, or, failing
that, when the detection's centre lies within 0.75 box side of the predicted centre and the
areas differ by at most 2x (a fast move, a score below any IoU match). A detection matched
to no face by position may still be a lost face by appearance: `reidentify` (the pipeline's
person identifier: clearly the same person by the face descriptor) resumes that face's
track, which its position could not (it walked on or turned while missed). The other
unmatched detections start new ids (0, 1, 2, ... in order of appearance). Two tracks never
sit on one face: when two active boxes overlap by half the smaller one's area, the younger
track (higher id) is dropped, unless only it was just detected. A face the detector misses
keeps being tracked while its checks pass, for at most `max_missed` detection rounds; a lost
face keeps its id for `forget_after` frames, so a face that comes back after a short miss
gets its old id. A shot cut (`fgnet_video.face.shots`) ends every track and forgets the lost
ones: no id continues onto whoever stands in the next shot where a face stood.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from fgnet_video.face.align import aligned_to_source, ffhq_quad
from fgnet_video.face.boxes import box_iou, centre, same_face, visible_fraction
from fgnet_video.face.detect import Detection, FaceDetector, Region
from fgnet_video.face.landmarks import Box, LandmarkPredictor
from fgnet_video.face.shots import CutDetector

_PATCH = 32  # side of the grey patch compared between consecutive frames
_MATCH_IOU = 0.3  # a detection belongs to a face whose box it overlaps at least this much
_MIN_VISIBLE = 0.3  # a tracked box with less of its area inside the frame is lost
_MAX_ASPECT_CHANGE = 1.4  # a tracked box's h/w may differ from its detection's by this factor
_MAX_AREA_CHANGE = 2.0  # ... and its area by this factor
_FAST_MOVE = 0.1  # box sides per frame above which a face's box is predicted moving
_MAX_CENTRE_JUMP = 0.75  # a match by distance: centres within this share of the box side
_SEARCH_MARGIN = 1.0  # a re-detection looks this many box sides around a face's box
_GRID = 8  # a search region starts on multiples of this (the CNN's stride: its windows)

# reidentify(image, faces, lost, present): for each new face (box, landmarks) of `image` that
# matched no tracked or lost face by position, the id of the lost face (of `lost`, the most
# recently seen first) it is by appearance, or None; `present` are the ids in this frame.
Reidentify = Callable[[np.ndarray, list[tuple[Box, np.ndarray]], list[int], list[int]],
                      list[int | None]]


@dataclass(frozen=True)
class TrackedFace:
    """A face in one frame.

    `confidence` is the score of the latest detection matched to this face; `detected` says
    whether this frame's box came from the detector (False: propagated from the last frame).
    """

    face_id: int
    box: Box  # x, y, w, h in frame pixels
    landmarks: np.ndarray  # (68, 2) float64, frame pixels
    confidence: float
    detected: bool


def match_score(detection: Box, predicted: Box) -> float:
    """How well a detection matches a face predicted at `predicted`: their IoU when it is at
    least 0.3; else, for a centre within 0.75 box side and areas within 2x of each other,
    a score in (0, 0.3) falling with the distance; else 0 (no match)."""
    iou = box_iou(detection, predicted)
    if iou >= _MATCH_IOU:
        return iou
    (dx, dy), (px, py) = centre(detection), centre(predicted)
    side = float(np.sqrt(predicted[2] * predicted[3]))
    distance = float(np.hypot(dx - px, dy - py))
    area_ratio = (detection[2] * detection[3]) / max(predicted[2] * predicted[3], 1e-9)
    if side <= 0 or distance > _MAX_CENTRE_JUMP * side or not (
            1 / _MAX_AREA_CHANGE <= area_ratio <= _MAX_AREA_CHANGE):
        return 0.0
    return _MATCH_IOU * (1.0 - distance / (_MAX_CENTRE_JUMP * side)) * 0.999


def search_region(box: Box, width: int, height: int) -> Region:
    """Where a tracked face is looked for in a re-detection (`FaceTracker._detect_around`):
    its box widened by _SEARCH_MARGIN box sides on every side, within the frame (at least
    1 px of it, also for a box predicted past its edge), starting on the CNN's grid (so
    that at the first pyramid level of the default passes, scales 1 and 2, it scores the
    whole frame's windows; at other levels and scales nearly)."""
    x, y, w, h = box
    margin = _SEARCH_MARGIN * max(w, h)
    x0, y0 = (min(max(int(v - margin) // _GRID * _GRID, 0), (size - 1) // _GRID * _GRID)
              for v, size in ((x, width), (y, height)))
    x1, y1 = min(int(np.ceil(x + w + margin)), width), min(int(np.ceil(y + h + margin)), height)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def plausible_change(box: Box, detected: Box) -> bool:
    """Whether a tracked box keeps the shape and size of its last detection's box (see the
    module docstring): no collapse, no runaway growth."""
    if min(box[2], box[3], detected[2], detected[3]) <= 0:
        return False
    aspect = (box[3] / box[2]) / (detected[3] / detected[2])
    area = (box[2] * box[3]) / (detected[2] * detected[3])
    return (1 / _MAX_ASPECT_CHANGE <= aspect <= _MAX_ASPECT_CHANGE
            and 1 / _MAX_AREA_CHANGE <= area <= _MAX_AREA_CHANGE)


def _landmark_extent(landmarks: np.ndarray) -> Box:
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(max(hi[0] - lo[0], 1.0)),
            float(max(hi[1] - lo[1], 1.0)))


def face_patch(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm 32x32 grey patch of the FFHQ-aligned face (for comparisons)."""
    warp = aligned_to_source(ffhq_quad(landmarks), _PATCH)[:2]
    patch = cv2.warpAffine(image, warp, (_PATCH, _PATCH),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT_101)
    grey = patch.astype(np.float32).mean(axis=2)
    grey -= grey.mean()
    return grey / (float(np.linalg.norm(grey)) + 1e-6)


@dataclass(eq=False)
class _Track:
    face_id: int
    box: Box
    landmarks: np.ndarray
    confidence: float
    box_in_extent: tuple[float, float, float, float]  # box relative to the landmark extent
    patch: np.ndarray
    last_frame: int
    detected_box: Box  # the box of the last detection matched to this face
    missed: int = 0
    velocity: tuple[float, float] = (0.0, 0.0)  # landmark centroid motion per frame (px)

    def box_for(self, landmarks: np.ndarray) -> Box:
        """The detector-style box for these landmarks (same relation as at the last detection)."""
        ex, ey, ew, eh = _landmark_extent(landmarks)
        rx, ry, rw, rh = self.box_in_extent
        return (ex + rx * ew, ey + ry * eh, rw * ew, rh * eh)

    def predicted(self, frame: int) -> Box:
        """The box moved on at its last velocity to `frame`, when that velocity is a fast
        move (over `_FAST_MOVE` box sides a frame; slower faces stay where they were, which
        the landmark fit absorbs)."""
        steps = frame - self.last_frame
        x, y, w, h = self.box
        vx, vy = self.velocity
        if np.hypot(vx, vy) < _FAST_MOVE * np.sqrt(w * h):
            return self.box
        return (x + vx * steps, y + vy * steps, w, h)

    def moved_to(self, box: Box, landmarks: np.ndarray, frame: int) -> None:
        """Take `box` and `landmarks` as the face's in `frame`, updating the velocity from the
        landmarks' centroids (comparable across detections, unlike detector and tracked
        boxes)."""
        steps = frame - self.last_frame
        if steps > 0:
            (nx, ny), (ox, oy) = landmarks.mean(axis=0), self.landmarks.mean(axis=0)
            self.velocity = (float(nx - ox) / steps, float(ny - oy) / steps)
        self.box, self.landmarks, self.last_frame = box, landmarks, frame


def _relation(box: Box, landmarks: np.ndarray) -> tuple[float, float, float, float]:
    ex, ey, ew, eh = _landmark_extent(landmarks)
    return ((box[0] - ex) / ew, (box[1] - ey) / eh, box[2] / ew, box[3] / eh)


@dataclass(frozen=True)
class _Fit:
    """Landmarks refitted in a track's propagated box, the box they imply, and whether they
    pass the checks."""

    box: Box
    landmarks: np.ndarray
    patch: np.ndarray
    consistent: bool


class FaceTracker:
    """Stateful per clip: call `update` with the frames of one clip in order.

    One instance per clip and per thread (it owns dlib objects and the tracking state).
    """

    def __init__(self, detector: FaceDetector, predictor: LandmarkPredictor, *,
                 detect_every: int = 10, max_faces: int | None = None, max_missed: int = 1,
                 forget_after: int = 50, min_iou: float = 0.6,
                 min_correlation: float = 0.6, reidentify: Reidentify | None = None) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.detector, self.predictor = detector, predictor
        self.detect_every, self.max_faces = detect_every, max_faces
        self.max_missed, self.forget_after = max_missed, forget_after
        self.min_iou, self.min_correlation = min_iou, min_correlation
        self.reidentify = reidentify
        self.reset()

    def reset(self) -> None:
        """Forget all faces (start of a new clip); ids restart at 0."""
        self._active: list[_Track] = []
        self._lost: list[_Track] = []
        self._next_id = 0
        self._frame = -1
        self._small_pass_frame: int | None = None  # the last frame scanned for small faces
        self._cuts = CutDetector()

    def _fit(self, image: np.ndarray, track: _Track) -> _Fit:
        prior = track.predicted(self._frame)  # where the face should be in this frame
        landmarks = self.predictor(image, prior)
        box = track.box_for(landmarks)
        patch = face_patch(image, landmarks)
        h, w = image.shape[:2]
        consistent = (box_iou(prior, box) >= self.min_iou
                      and float((patch * track.patch).sum()) >= self.min_correlation
                      and visible_fraction(box, w, h) >= _MIN_VISIBLE
                      and plausible_change(box, track.detected_box))
        return _Fit(box, landmarks, patch, consistent)

    def _new_track(self, image: np.ndarray, detection: Detection,
                   landmarks: np.ndarray) -> _Track:
        track = _Track(self._next_id, detection.box, landmarks, detection.score,
                       _relation(detection.box, landmarks), face_patch(image, landmarks),
                       self._frame, detection.box)
        self._next_id += 1
        return track

    def _refresh(self, image: np.ndarray, track: _Track, detection: Detection,
                 landmarks: np.ndarray | None = None) -> None:
        if landmarks is None:
            landmarks = self.predictor(image, detection.box)
        track.moved_to(detection.box, landmarks, self._frame)
        track.confidence, track.detected_box = detection.score, detection.box
        track.box_in_extent = _relation(detection.box, track.landmarks)
        track.patch = face_patch(image, track.landmarks)
        track.missed = 0

    @property
    def searching(self) -> bool:
        """Whether no face is tracked (every frame is then searched)."""
        return not self._active

    @property
    def frames_seen(self) -> int:
        """Frames given to `update` since the last reset (the next frame's number)."""
        return self._frame + 1

    def upcoming(self, count: int) -> list[tuple[int, bool]]:
        """(frame number, small_faces) of the detections the next `count` frames bring unless
        tracking changes course first (a check fails, a face is found or lost): with faces
        tracked, the scheduled detections; with none, one per frame. What a detector can
        prepare ahead."""
        start = self.frames_seen
        frames = (range(start + (-start) % self.detect_every, start + count, self.detect_every)
                  if self._active else range(start, start + count))
        upcoming, small_pass = [], self._small_pass_frame
        for frame in frames:
            if frame >= start + count:
                break
            due = self._small_pass_due(frame, small_pass)
            small_pass = frame if due else small_pass
            upcoming.append((frame, due))
        return upcoming

    def _small_pass_due(self, frame: int, last: int | None) -> bool:
        """Whether a detection at `frame` runs the small-face pass, the last one having run
        at `last` (None: never)."""
        return last is None or frame - last >= self.detect_every

    def update(self, image: np.ndarray) -> list[TrackedFace]:
        """Faces in the next frame of the clip (uint8 RGB), sorted by face id."""
        self._frame += 1
        image = np.ascontiguousarray(image)
        if self._cuts.is_cut(image):  # a new shot: no face continues into it
            self._active, self._lost = [], []
        scheduled = not self._active or self._frame % self.detect_every == 0
        fits = {} if scheduled else {id(t): self._fit(image, t) for t in self._active}
        detected: set[int] = set()
        failing = [t for t in self._active if not scheduled and not fits[id(t)].consistent]
        if scheduled or (failing and not getattr(self.detector, "local_redetection", False)):
            detected = self._detect(image, fits)
        elif failing:
            detected = self._detect_around(image, fits, failing)
        else:
            for track in self._active:
                self._follow(track, fits[id(track)])
        self._drop_duplicates(detected)
        self._limit_faces()
        self._lost = [t for t in self._lost if self._frame - t.last_frame <= self.forget_after]
        return [TrackedFace(t.face_id, t.box, t.landmarks, t.confidence, t.face_id in detected)
                for t in sorted(self._active, key=lambda t: t.face_id)]

    def _follow(self, track: _Track, fit: _Fit) -> None:
        track.moved_to(fit.box, fit.landmarks, self._frame)
        track.patch = fit.patch

    def _drop_duplicates(self, detected: set[int]) -> None:
        """Of two active tracks on one face (`same_face`), keep the older one, or the only one
        detected in this frame; the other is forgotten."""
        kept: list[_Track] = []
        for track in sorted(self._active, key=lambda t: (t.face_id not in detected, t.face_id)):
            if not any(same_face(track.box, other.box) for other in kept):
                kept.append(track)
        self._active = kept

    def _detect(self, image: np.ndarray, fits: dict[int, _Fit]) -> set[int]:
        """Run the detector and match its boxes to faces; returns the ids it saw. Its
        small-face pass runs every `detect_every` frames, and besides whenever a tracked
        face that only that pass can find (under the detector's `small_face_side`) failed
        its checks: without it the face would be lost, and found again as a new face."""
        small_faces = self._small_pass_due(self._frame, self._small_pass_frame)
        if small_faces:
            self._small_pass_frame = self._frame
        else:
            side = getattr(self.detector, "small_face_side", 0.0)
            small_faces = any(not fit.consistent and min(t.box[2], t.box[3]) < side
                              for t in self._active if (fit := fits.get(id(t))) is not None)
        detections = self.detector(image, small_faces=small_faces)
        return self._match(image, detections, fits)

    def _detect_around(self, image: np.ndarray, fits: dict[int, _Fit],
                       failing: list[_Track]) -> set[int]:
        """A re-detection for the `failing` faces by a detector with `local_redetection`:
        around every tracked face only (`search_region`, `in_region`, with the small-face
        pass for a face only that pass can find), so that each is found again, or counts a
        miss, as in a whole-frame detection. Of two detections of one face (regions
        overlap) the higher score is kept, and only those that match a tracked face best
        by position: faces new or lost since the keyframe are found at keyframes (a region
        cuts through its neighbours' faces at its edges). The whole frame is searched
        instead (`_detect`) when the regions hold as many pixels as the frame, and when a
        failing face is no detection's best match (it may have moved far). Returns the ids
        detected."""
        h, w = image.shape[:2]
        regions = [search_region(track.predicted(self._frame), w, h) for track in self._active]
        if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions) >= w * h:
            return self._detect(image, fits)
        side = getattr(self.detector, "small_face_side", 0.0)
        found: list[Detection] = []
        for track, region in zip(self._active, regions, strict=True):
            small = min(track.box[2], track.box[3]) < side
            found += self.detector.in_region(image, region, small)
        detections: list[Detection] = []
        for candidate in sorted(found, key=lambda d: d.score, reverse=True):
            if not any(same_face(candidate.box, d.box) for d in detections):
                detections.append(candidate)
        owners = [self._best_match(d.box) for d in detections]
        if not all(any(owner is track for owner in owners) for track in failing):
            return self._detect(image, fits)  # a failing face is not there: the whole frame
        return self._match(image, [d for d, owner in zip(detections, owners, strict=True)
                                   if owner is not None], fits)

    def _best_match(self, box: Box) -> _Track | None:
        """The tracked face that `box` matches best by position (`match_score`), if any."""
        scores = [(match_score(box, t.predicted(self._frame)), k)
                  for k, t in enumerate(self._active)]
        score, k = max(scores, default=(0.0, -1))
        return self._active[k] if score > 0 else None

    def _match(self, image: np.ndarray, detections: list[Detection], fits: dict[int, _Fit]
               ) -> set[int]:
        """Match `detections` to the tracked and lost faces (module docstring); a tracked
        face that none matches counts a miss, and follows its fit while that passes its
        checks, for at most `max_missed` detections. Returns the ids detected."""
        candidates = self._active + self._lost
        pairs = sorted(((match_score(d.box, t.predicted(self._frame)), i, j)
                        for i, d in enumerate(detections) for j, t in enumerate(candidates)),
                       reverse=True)
        matched_d: set[int] = set()
        matched: list[_Track] = []
        for score, i, j in pairs:
            if score <= 0:
                break
            if i in matched_d or candidates[j] in matched:
                continue
            matched_d.add(i)
            matched.append(candidates[j])
            self._refresh(image, candidates[j], detections[i])
        active, lost = list(matched), [t for t in self._lost if t not in matched]
        for track in self._active:
            if track in matched:
                continue
            fit = fits.get(id(track)) or self._fit(image, track)
            track.missed += 1
            if fit.consistent and track.missed <= self.max_missed:
                self._follow(track, fit)
                active.append(track)
            else:
                lost.append(track)
        fresh = [d for i, d in enumerate(detections)
                 if i not in matched_d and not any(same_face(d.box, t.box) for t in active)]
        points = [self.predictor(image, d.box) for d in fresh]
        new: list[_Track] = []
        for detection, landmarks, track in zip(
                fresh, points, self._resumed(image, fresh, points, lost, active), strict=True):
            if track is None:
                new.append(self._new_track(image, detection, landmarks))
            else:
                lost.remove(track)
                self._refresh(image, track, detection, landmarks)
                track.velocity = (0.0, 0.0)  # the motion across a gap predicts nothing
                matched.append(track)
                active.append(track)
        self._active, self._lost = active + new, lost
        return {t.face_id for t in matched + new}

    def _resumed(self, image: np.ndarray, fresh: list[Detection], points: list[np.ndarray],
                 lost: list[_Track], active: list[_Track]) -> list[_Track | None]:
        """For each detection that matched no face by position, the lost face it is by
        appearance (`reidentify`), or None: a new face."""
        if self.reidentify is None or not fresh or not lost:
            return [None] * len(fresh)
        recent = sorted(lost, key=lambda t: t.last_frame, reverse=True)
        ids = self.reidentify(image, [(d.box, p) for d, p in zip(fresh, points, strict=True)],
                              [t.face_id for t in recent], [t.face_id for t in active])
        by_id = {t.face_id: t for t in recent}
        return [None if face_id is None else by_id[face_id] for face_id in ids]

    def _limit_faces(self) -> None:
        if self.max_faces is None or len(self._active) <= self.max_faces:
            return
        by_size = sorted(self._active, key=lambda t: t.box[2] * t.box[3], reverse=True)
        self._active = by_size[: self.max_faces]
        self._lost += by_size[self.max_faces:]
