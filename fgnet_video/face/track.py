"""Face tracking between detections by landmark propagation, with stable face ids.

The detector runs every `detect_every` frames (and on the first frame, whenever no face is
tracked, and whenever a tracked face fails its consistency checks). In between, each face's
box in the new frame is the box implied by its landmarks of the previous frame, and the
68-point predictor refits the landmarks inside it.

Why landmark propagation rather than e.g. dlib.correlation_tracker: the landmarks are needed
on every frame anyway, so the box costs nothing extra and follows scale, rotation and
non-rigid motion; a correlation tracker would add several ms per face per frame and drift in
scale. Its weakness, a predictor that happily fits a face-shaped set of points to anything, is
covered by two cheap checks per frame: the box implied by the refitted landmarks must agree
with the box they were fitted in (IoU), and a 32x32 grey patch of the aligned face must still
correlate with the previous frame's (normalised cross-correlation). A failed check triggers
a detection on the same frame.

Ids: detections are matched to tracked faces (and to recently lost ones) by IoU, greedily from
the best overlap; unmatched detections start new ids (0, 1, 2, ... in order of appearance). A
face the detector misses keeps being tracked while its checks pass, for at most `max_missed`
detection rounds; a lost face keeps its id for `forget_after` frames, so a face that comes
back after a short miss gets its old id.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fgnet_video.face.align import aligned_to_source, ffhq_quad
from fgnet_video.face.detect import Detection, FaceDetector
from fgnet_video.face.landmarks import Box, LandmarkPredictor

_PATCH = 32  # side of the grey patch compared between consecutive frames
_MATCH_IOU = 0.3  # a detection belongs to a face whose box it overlaps at least this much
_MIN_VISIBLE = 0.3  # a tracked box with less of its area inside the frame is lost


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


def _overlap(a: Box, b: Box) -> float:
    """Area of the intersection of two (x, y, w, h) boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(iw, 0.0) * max(ih, 0.0)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    inter = _overlap(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def visible_fraction(box: Box, width: int, height: int) -> float:
    """Share of the box's area inside a width x height frame."""
    area = box[2] * box[3]
    return _overlap(box, (0.0, 0.0, float(width), float(height))) / area if area > 0 else 0.0


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
    missed: int = 0

    def box_for(self, landmarks: np.ndarray) -> Box:
        """The detector-style box for these landmarks (same relation as at the last detection)."""
        ex, ey, ew, eh = _landmark_extent(landmarks)
        rx, ry, rw, rh = self.box_in_extent
        return (ex + rx * ew, ey + ry * eh, rw * ew, rh * eh)


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
                 min_correlation: float = 0.6) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.detector, self.predictor = detector, predictor
        self.detect_every, self.max_faces = detect_every, max_faces
        self.max_missed, self.forget_after = max_missed, forget_after
        self.min_iou, self.min_correlation = min_iou, min_correlation
        self.reset()

    def reset(self) -> None:
        """Forget all faces (start of a new clip); ids restart at 0."""
        self._active: list[_Track] = []
        self._lost: list[_Track] = []
        self._next_id = 0
        self._frame = -1
        self._since_detection = 0

    def _fit(self, image: np.ndarray, track: _Track) -> _Fit:
        prior = track.box_for(track.landmarks)  # where the face was in the previous frame
        landmarks = self.predictor(image, prior)
        box = track.box_for(landmarks)
        patch = face_patch(image, landmarks)
        h, w = image.shape[:2]
        consistent = (box_iou(prior, box) >= self.min_iou
                      and float((patch * track.patch).sum()) >= self.min_correlation
                      and visible_fraction(box, w, h) >= _MIN_VISIBLE)
        return _Fit(box, landmarks, patch, consistent)

    def _new_track(self, image: np.ndarray, detection: Detection) -> _Track:
        landmarks = self.predictor(image, detection.box)
        track = _Track(self._next_id, detection.box, landmarks, detection.score,
                       _relation(detection.box, landmarks), face_patch(image, landmarks),
                       self._frame)
        self._next_id += 1
        return track

    def _refresh(self, image: np.ndarray, track: _Track, detection: Detection) -> None:
        track.box, track.confidence = detection.box, detection.score
        track.landmarks = self.predictor(image, detection.box)
        track.box_in_extent = _relation(detection.box, track.landmarks)
        track.patch = face_patch(image, track.landmarks)
        track.missed, track.last_frame = 0, self._frame

    def update(self, image: np.ndarray) -> list[TrackedFace]:
        """Faces in the next frame of the clip (uint8 RGB), sorted by face id."""
        self._frame += 1
        image = np.ascontiguousarray(image)
        scheduled = not self._active or self._since_detection + 1 >= self.detect_every
        fits = {} if scheduled else {id(t): self._fit(image, t) for t in self._active}
        detected: set[int] = set()
        if scheduled or not all(f.consistent for f in fits.values()):
            self._since_detection = 0
            detected = self._detect(image, fits)
        else:
            self._since_detection += 1
            for track in self._active:
                self._follow(track, fits[id(track)])
        self._limit_faces()
        self._lost = [t for t in self._lost if self._frame - t.last_frame <= self.forget_after]
        return [TrackedFace(t.face_id, t.box, t.landmarks, t.confidence, t.face_id in detected)
                for t in sorted(self._active, key=lambda t: t.face_id)]

    def _follow(self, track: _Track, fit: _Fit) -> None:
        track.box, track.landmarks, track.patch = fit.box, fit.landmarks, fit.patch
        track.last_frame = self._frame

    def _detect(self, image: np.ndarray, fits: dict[int, _Fit]) -> set[int]:
        """Run the detector and match its boxes to faces; returns the ids it saw."""
        detections = self.detector(image)
        candidates = self._active + self._lost
        pairs = sorted(((box_iou(d.box, t.box), i, j) for i, d in enumerate(detections)
                        for j, t in enumerate(candidates)), reverse=True)
        matched_d: set[int] = set()
        matched: list[_Track] = []
        for overlap, i, j in pairs:
            if overlap < _MATCH_IOU:
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
        new = [self._new_track(image, d) for i, d in enumerate(detections)
               if i not in matched_d and all(box_iou(d.box, t.box) < _MATCH_IOU for t in active)]
        self._active, self._lost = active + new, lost
        return {t.face_id for t in matched + new}

    def _limit_faces(self) -> None:
        if self.max_faces is None or len(self._active) <= self.max_faces:
            return
        by_size = sorted(self._active, key=lambda t: t.box[2] * t.box[3], reverse=True)
        self._active = by_size[: self.max_faces]
        self._lost += by_size[self.max_faces:]
