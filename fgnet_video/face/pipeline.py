"""The face stage of `analyze`: frame in, tracked faces with landmarks and aligned crops out.

    pipeline = FacePipeline(FaceSettings(detect_every=10))
    for frame in VideoReader("clip.mp4"):
        for face in pipeline.process(frame):
            face.face_id, face.box, face.landmarks, face.aligned  # (256, 256, 3) uint8

A FacePipeline holds the tracking state of one clip: feed it that clip's frames in order
(call `reset()` before another clip) and use one instance per thread. The per-face alignment
is also available separately (`align_tracked`), e.g. to run it in other workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgnet_video.errors import UserError
from fgnet_video.face.align import ALIGN_METHODS, AlignMethod, ffhq_align
from fgnet_video.face.detect import DETECTOR_KINDS, DetectorKind, FaceDetector
from fgnet_video.face.landmarks import Box, LandmarkPredictor
from fgnet_video.face.track import FaceTracker, TrackedFace
from fgnet_video.video import Frame


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found, followed and aligned.

    detector: 'hog' (dlib frontal HOG, fast) or 'cnn' (dlib MMOD CNN, slow on CPU).
    detect_every: run the detector every k frames (plus whenever tracking is unsure).
    downscale: factor of the frame copy the detector scans; None = 80 / min_face_size.
    min_face_size: smallest face (detector box side, frame pixels) reported.
    max_faces: keep at most this many faces per frame (largest first); None = all.
    min_confidence: detector score a detection needs (HOG SVM margin or CNN confidence;
        0 is dlib's default; about 0.3-0.5 drops face-like patterns such as badges).
    align_method: 'fast' (one warp) or 'exact' (the release's PIL recipe, slow).
    aligned_size: side of the aligned crop (FG-Net reads 256).
    """

    detector: DetectorKind = "hog"
    detect_every: int = 10
    downscale: float | None = None
    min_face_size: float = 100.0
    max_faces: int | None = None
    min_confidence: float = 0.0
    align_method: AlignMethod = "fast"
    aligned_size: int = 256

    def __post_init__(self) -> None:
        if self.detector not in DETECTOR_KINDS:
            raise UserError(f"unknown face detector {self.detector!r} (use hog or cnn)")
        if self.align_method not in ALIGN_METHODS:
            raise UserError(f"unknown alignment method {self.align_method!r} (use fast or exact)")
        if self.detect_every < 1:
            raise UserError(f"detect_every must be at least 1, got {self.detect_every}")
        if self.downscale is not None and not self.downscale > 0:
            raise UserError(f"downscale must be positive, got {self.downscale}")
        if not self.min_face_size > 0:
            raise UserError(f"min_face_size must be positive, got {self.min_face_size}")
        if self.max_faces is not None and self.max_faces < 1:
            raise UserError(f"max_faces must be at least 1, got {self.max_faces}")
        if self.aligned_size < 8:
            raise UserError(f"aligned_size must be at least 8, got {self.aligned_size}")


@dataclass(frozen=True)
class Face:
    """One face in one frame, ready for FG-Net.

    `confidence` is the detector score of the latest detection of this face (HOG: SVM margin,
    > 0; CNN: MMOD confidence); `detected` is False on frames where the box was tracked.
    `matrix` (3x3) maps frame pixels to aligned pixels; `aligned_landmarks` = landmarks mapped.
    """

    frame_index: int
    time: float
    face_id: int
    box: Box  # x, y, w, h in frame pixels
    confidence: float
    detected: bool
    landmarks: np.ndarray  # (68, 2) float64, frame pixels
    aligned: np.ndarray  # (size, size, 3) uint8 RGB
    matrix: np.ndarray  # (3, 3) float64
    aligned_landmarks: np.ndarray  # (68, 2) float64, aligned pixels


def align_tracked(frame: Frame, tracked: TrackedFace, size: int = 256,
                  method: AlignMethod = "fast") -> Face:
    """Align one tracked face of `frame` into a Face record (stateless, thread-safe)."""
    aligned = ffhq_align(frame.image, tracked.landmarks, size=size, method=method)
    return Face(frame.index, frame.time, tracked.face_id, tracked.box, tracked.confidence,
                tracked.detected, tracked.landmarks, aligned.image, aligned.matrix,
                aligned.landmarks)


class FacePipeline:
    """Detect/track, landmark and align the faces of one clip, frame by frame."""

    def __init__(self, settings: FaceSettings | None = None, *,
                 predictor: LandmarkPredictor | None = None) -> None:
        """`predictor` lets pipelines of one thread share the 100 MB landmark model."""
        self.settings = settings or FaceSettings()
        s = self.settings
        detector = FaceDetector(s.detector, min_face_size=s.min_face_size, downscale=s.downscale,
                                threshold=s.min_confidence)
        self.tracker = FaceTracker(detector, predictor or LandmarkPredictor(),
                                   detect_every=s.detect_every, max_faces=s.max_faces)

    def reset(self) -> None:
        """Start a new clip (face ids restart at 0)."""
        self.tracker.reset()

    def track(self, frame: Frame) -> list[TrackedFace]:
        """Boxes, ids and landmarks of the faces in the next frame (no alignment)."""
        return self.tracker.update(frame.image)

    def process(self, frame: Frame) -> list[Face]:
        """The faces of the next frame of the clip, sorted by face id."""
        s = self.settings
        return [align_tracked(frame, t, s.aligned_size, s.align_method)
                for t in self.track(frame)]
