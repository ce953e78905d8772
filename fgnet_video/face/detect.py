"""Face detection with dlib: the frontal HOG detector, or the CNN (MMOD) detector.

Both dlib detectors find faces from about 80 px (box side) upwards. Detection runs on a
rescaled copy of the frame: `downscale` 0.5 halves each side (4x fewer pixels to scan, faces
below 160 px are then missed); by default the factor is 80 / min_face_size, the smallest
copy on which every face of at least `min_face_size` px is still findable (below 1 for large
minimum sizes, above 1, i.e. upsampling, for small ones). Boxes come back in frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fgnet_video.face.landmarks import (
    CNN_DETECTOR_MODEL,
    Box,
    dlib_module,
    from_dlib_rect,
    model_file,
)
from fgnet_video.options import DETECTOR_KINDS, DetectorKind

if TYPE_CHECKING:
    import dlib

DLIB_MIN_FACE = 80  # box side (px) of the smallest face dlib's detectors find


@dataclass(frozen=True)
class Detection:
    """A detected face: box (x, y, w, h) in frame pixels and the detector's score.

    HOG scores are SVM margins (> 0 at the default threshold), CNN scores MMOD confidences.
    """

    box: Box
    score: float


def detection_scale(min_face_size: float, downscale: float | None = None) -> float:
    """Factor applied to a frame before detection (see module docstring)."""
    if downscale is not None:
        if not downscale > 0:
            raise ValueError(f"downscale must be positive, got {downscale}")
        return float(downscale)
    if not min_face_size > 0:
        raise ValueError(f"min_face_size must be positive, got {min_face_size}")
    return DLIB_MIN_FACE / float(min_face_size)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """The image resized by `scale` (area averaging down, bilinear up)."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


class FaceDetector:
    """Faces in an RGB frame, largest first, none smaller than `min_face_size` px.

    `upsample` is dlib's own pyramid upsampling (1 doubles the image), applied after the
    rescale; FG-Net's preprocessing detected with upsample 1 on full frames.

    One instance per thread (dlib detectors are not thread-safe).
    """

    def __init__(self, kind: DetectorKind = "hog", *, min_face_size: float = 80.0,
                 downscale: float | None = None, upsample: int = 0,
                 threshold: float = 0.0) -> None:
        if kind not in DETECTOR_KINDS:
            raise ValueError(f"unknown detector {kind!r} (use 'hog' or 'cnn')")
        self.kind = kind
        self.min_face_size = float(min_face_size)
        self.scale = detection_scale(min_face_size, downscale)
        self.upsample, self.threshold = upsample, threshold
        if kind == "hog":
            self._hog = dlib_module().get_frontal_face_detector()
        else:
            model = str(model_file(CNN_DETECTOR_MODEL))
            self._cnn = dlib_module().cnn_face_detection_model_v1(model)

    def _run(self, image: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        if self.kind == "hog":
            rects, scores, _ = self._hog.run(image, self.upsample, self.threshold)
            return list(zip(rects, scores, strict=True))
        return [(d.rect, d.confidence) for d in self._cnn(image, self.upsample)
                if d.confidence >= self.threshold]

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detections in `image` (uint8 RGB), sorted by box area, largest first."""
        small = np.ascontiguousarray(rescale(image, self.scale))
        found = []
        for rect, score in self._run(small):
            x, y, w, h = (v / self.scale for v in from_dlib_rect(rect))
            if min(w, h) >= self.min_face_size:
                found.append(Detection((x, y, w, h), float(score)))
        return sorted(found, key=lambda d: d.box[2] * d.box[3], reverse=True)
