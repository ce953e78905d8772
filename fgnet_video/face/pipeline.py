"""The face stage of `analyze`: frame in, tracked faces with landmarks and aligned crops out.

    pipeline = FacePipeline(FaceSettings(detect_every=10))
    for frame in VideoReader("clip.mp4"):
        for face in pipeline.process(frame):
            face.face_id, face.person_id, face.box, face.landmarks, face.aligned  # (256, 256, 3)

A FacePipeline holds the tracking state of one clip: feed it that clip's frames in order
(call `reset()` before another clip) and use one instance per thread. Person ids, which
survive gaps between tracks, come from `fgnet_video.face.person.PersonIdentifier`. The
per-face alignment is also available separately (`align_tracked`), e.g. to run it in other
workers. The settings (`FaceSettings`, with their defaults) live in `fgnet_video.options`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fgnet_video.face.align import ffhq_align
from fgnet_video.face.detect import FaceDetector
from fgnet_video.face.landmarks import Box, LandmarkPredictor
from fgnet_video.face.person import FaceEmbedder, PersonIdentifier, named_references
from fgnet_video.face.track import FaceTracker, TrackedFace
from fgnet_video.media.video import Frame
from fgnet_video.options import AlignMethod, FaceSettings

if TYPE_CHECKING:
    from fgnet_video.face.device_detections import SharedFaceNetworks


@dataclass(frozen=True)
class Face:
    """One face in one frame, ready for FG-Net.

    `confidence` is the detector score of the latest detection of this face (HOG: SVM margin,
    > 0; CNN: MMOD confidence); `detected` is False on frames where the box was tracked.
    `matrix` (3x3) maps frame pixels to aligned pixels; `aligned_landmarks` = landmarks mapped.
    `person_id` groups the tracks of one person and `person` is that person's name when it is
    a named one (`fgnet_video.face.person`); None when the face stage does not say.
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
    person_id: int | None = None
    person: str | None = None


def align_tracked(frame: Frame, tracked: TrackedFace, size: int = 256,
                  method: AlignMethod = "fast", person_id: int | None = None,
                  person: str | None = None) -> Face:
    """Align one tracked face of `frame` into a Face record (stateless, thread-safe)."""
    aligned = ffhq_align(frame.image, tracked.landmarks, size=size, method=method)
    return Face(frame.index, frame.time, tracked.face_id, tracked.box, tracked.confidence,
                tracked.detected, tracked.landmarks, aligned.image, aligned.matrix,
                aligned.landmarks, person_id, person)


class FacePipeline:
    """Detect/track, landmark and align the faces of one clip, frame by frame."""

    def __init__(self, settings: FaceSettings | None = None, *,
                 predictor: LandmarkPredictor | None = None, device: str = "cpu",
                 shared: SharedFaceNetworks | None = None) -> None:
        """`predictor` lets pipelines of one thread share the 100 MB landmark model; the
        networks (detector, descriptors) run on the torch `device`, or, given the networks
        of another process (`shared`), the descriptors there and this process's detector
        on the CPU (only its one-frame form reads it: `fgnet_video.face.parallel`)."""
        self.settings = settings or FaceSettings()
        s = self.settings
        if shared is not None:
            device = "cpu"
        self.tracker = FaceTracker(FaceDetector.for_settings(s, device=device),
                                   predictor or LandmarkPredictor(),
                                   detect_every=s.detect_every, max_faces=s.max_faces)
        embedder = FaceEmbedder(device, shared.read_chips if shared is not None else None)
        self.persons = PersonIdentifier(embedder, s.same_person_distance,
                                        named_references(s.people, embedder))
        self.tracker.reidentify = self.persons.resumable

    def reset(self) -> None:
        """Start a new clip (face and person ids restart at 0)."""
        self.tracker.reset()
        self.persons.reset()

    def track(self, frame: Frame) -> list[TrackedFace]:
        """Boxes, ids and landmarks of the faces in the next frame (no alignment)."""
        return self.tracker.update(frame.image)

    def locate(self, frame: Frame) -> list[tuple[TrackedFace, int | None, str | None]]:
        """The faces of the next frame of the clip, sorted by face id, each with its person
        id and name: the sequential part of `process` (tracking, persons)."""
        tracked = self.track(frame)
        persons = self.persons.update(frame.image, tracked)
        return [(t, person_id, name) for t, (person_id, name) in zip(tracked, persons,
                                                                      strict=True)]

    def align(self, frame: Frame, located: list[tuple[TrackedFace, int | None, str | None]]
              ) -> list[Face]:
        """The Face records of `locate`'s faces of `frame` (stateless: any thread)."""
        s = self.settings
        return [align_tracked(frame, t, s.aligned_size, s.align_method, person_id, name)
                for t, person_id, name in located]

    def process(self, frame: Frame) -> list[Face]:
        """The faces of the next frame of the clip, sorted by face id, with person ids."""
        return self.align(frame, self.locate(frame))
