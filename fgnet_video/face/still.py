"""Still photos the release's way: the largest face, exact FFHQ alignment, landmarks redone.

The recipe FG-Net's training data was made with (and `predict` uses on raw photos):

1. dlib frontal HOG detector with upsample 1 on the full image; the largest face is kept;
2. dlib 68-point landmarks in that box;
3. the exact FFHQ alignment to size x size (see fgnet_video.face.align);
4. landmarks re-detected on the aligned image (same detector and predictor; when the
   detector finds nothing there, the predictor refits in the mapped source box).
"""

from __future__ import annotations

import math

import numpy as np

from fgnet_video.face.align import ffhq_align, transform_points
from fgnet_video.face.detect import FaceDetector
from fgnet_video.face.landmarks import Box, LandmarkPredictor


class ReleaseAligner:
    """One image -> (aligned image, landmarks on it), the release's way; None without a face."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.detector = FaceDetector("hog", downscale=1.0, upsample=1, min_face_size=1)
        self.predictor = LandmarkPredictor()

    def largest_face(self, image: np.ndarray) -> tuple[Box, np.ndarray] | None:
        """Box and 68 landmarks of the largest face (HOG, upsample 1); None without a face."""
        detections = self.detector(image)
        if not detections:
            return None
        return detections[0].box, self.predictor(image, detections[0].box)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        face = self.largest_face(image)
        if face is None:
            return None
        box, landmarks = face
        aligned = ffhq_align(image, landmarks, size=self.size, method="exact")
        redetected = self.largest_face(aligned.image)
        if redetected is not None:
            return aligned.image, redetected[1]
        return aligned.image, self.predictor(aligned.image, _map_box(aligned.matrix, box))


def _map_box(matrix: np.ndarray, box: Box) -> Box:
    """A square box of the same relative size around the mapped centre of `box`."""
    x, y, w, h = box
    centre = transform_points(matrix, np.array([[x + w / 2, y + h / 2]]))[0]
    scale = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    side_w, side_h = w * scale, h * scale
    return (centre[0] - side_w / 2, centre[1] - side_h / 2, side_w, side_h)


