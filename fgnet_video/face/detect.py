"""Face detection with dlib: the frontal HOG detector, or the CNN (MMOD) detector.

Both dlib detectors find faces from about 80 px (box side) upwards. Detection runs on
rescaled copies of the frame, in passes (`detection_passes`):

- `min_face_size` >= 80: one pass on the copy scaled by 80 / min_face_size (the smallest copy
  on which every face of at least that size is still findable).
- `min_face_size` < 80 (the default is 40): a pass on the frame itself for faces of 80 px and
  more, and a small-face pass on the copy upscaled by 80 / min_face_size that keeps only
  faces under 80 px not already found, with a detector score of at least 0.5
  (SMALL_FACE_MIN_SCORE: upscaled texture such as a name badge scores -0.5 to 0.1 there,
  real 44-75 px faces 1 to 3 with HOG). Large faces thus get the same boxes whatever the
  minimum size; the small-face pass, 4x the pixels at 40 px, can be skipped on a call
  (`small_faces=False`: the tracker runs it only every `detect_every` frames). The CNN
  scans only the pyramid levels of that copy that can hold a face under 80 px
  (`MmodDetector.scan_levels`: at 40 px, levels 0-3, 9.7 of the whole pyramid's 13.5 Mpx
  for a 720p frame), with nearly the detections the whole pyramid gives (the same faces on
  67 real frames: benchmarks/small_face_levels.py).
- `downscale` given: one pass on the copy scaled by it (0.5 halves each side: 4x fewer pixels
  to scan, faces below 160 px are then missed).

Boxes come back in frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fgnet_video.face.boxes import same_face
from fgnet_video.face.landmarks import (
    CNN_DETECTOR_MODEL,
    Box,
    dlib_module,
    from_corners,
    from_dlib_rect,
    model_file,
)
from fgnet_video.options import DETECTOR_MIN_FACE, DetectorKind, FaceSettings, detector_for

SMALL_FACE_MIN_SCORE = 0.5  # the least detector score of a face from the small-face pass


@dataclass(frozen=True)
class Detection:
    """A detected face: box (x, y, w, h) in frame pixels and the detector's score.

    HOG scores are SVM margins (> 0 at the default threshold), CNN scores MMOD confidences.
    """

    box: Box
    score: float


@dataclass(frozen=True)
class DetectionPass:
    """One scan: the frame scaled by `scale`, keeping faces of `smallest` <= side < `largest`
    whose detector score is at least `min_score`."""

    scale: float
    smallest: float
    largest: float = float("inf")
    min_score: float = float("-inf")


def detection_passes(min_face_size: float, downscale: float | None = None
                     ) -> list[DetectionPass]:
    """The scans that find every face of at least `min_face_size` px (module docstring); the
    first finds the large faces, any second one the small faces."""
    if downscale is not None:
        if not downscale > 0:
            raise ValueError(f"downscale must be positive, got {downscale}")
        return [DetectionPass(float(downscale), float(min_face_size))]
    if not min_face_size > 0:
        raise ValueError(f"min_face_size must be positive, got {min_face_size}")
    if min_face_size >= DETECTOR_MIN_FACE:
        return [DetectionPass(DETECTOR_MIN_FACE / float(min_face_size), float(min_face_size))]
    return [DetectionPass(1.0, DETECTOR_MIN_FACE),
            DetectionPass(DETECTOR_MIN_FACE / float(min_face_size), float(min_face_size),
                          DETECTOR_MIN_FACE, SMALL_FACE_MIN_SCORE)]


Region = tuple[int, int, int, int]  # x0, y0, x1, y1: a crop of a frame, in its px


def crop(image: np.ndarray, region: Region) -> np.ndarray:
    """The `region` of `image`, contiguous (what a detector scans)."""
    x0, y0, x1, y1 = region
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def shifted(detections: list[Detection], region: Region) -> list[Detection]:
    """Detections in a crop of `region`, moved to the frame's px."""
    x0, y0 = region[:2]
    return [Detection((x + x0, y + y0, w, h), d.score)
            for d in detections for x, y, w, h in [d.box]]


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """The image resized by `scale` (area averaging down, bilinear up)."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


class FaceDetector:
    """Faces in RGB frames, largest first, none smaller than `min_face_size` px.

    kind "hog": dlib's frontal HOG detector (CPU). kind "cnn": dlib's MMOD CNN detector,
    the very network of `mmod_human_face_detector.dat` run in PyTorch on `device`
    (`fgnet_video.face.mmod`: dlib's boxes and confidences, frames batched). `upsample` is
    dlib's own pyramid upsampling (1 doubles the image), applied after the rescale;
    FG-Net's preprocessing detected with upsample 1 on full frames.

    One instance per thread (dlib detectors are not thread-safe).
    """

    def __init__(self, kind: DetectorKind = "hog", *, min_face_size: float = DETECTOR_MIN_FACE,
                 downscale: float | None = None, upsample: int = 0,
                 threshold: float = 0.0, device: str = "cpu") -> None:
        if kind not in ("hog", "cnn"):
            raise ValueError(f"unknown detector {kind!r} (use 'hog' or 'cnn')")
        self.kind = kind
        self.passes = detection_passes(min_face_size, downscale)
        self.upsample, self.threshold = upsample, threshold
        if kind == "hog":
            self._hog = dlib_module().get_frontal_face_detector()
        else:
            from fgnet_video.face.mmod import MmodDetector

            self._cnn = MmodDetector.from_file(model_file(CNN_DETECTOR_MODEL)).to(device)

    @classmethod
    def for_settings(cls, settings: FaceSettings, device: str = "cpu") -> FaceDetector:
        """The detector `settings` ask for (kind, minimum size, scale, score) on
        `device`."""
        return cls(detector_for(settings.detector), min_face_size=settings.min_face_size,
                   downscale=settings.downscale, threshold=settings.min_confidence,
                   device=device)

    @property
    def small_face_side(self) -> float:
        """Faces with a side under this many px are found by the small-face pass only (0
        when there is none)."""
        return self.passes[1].largest if len(self.passes) > 1 else 0.0

    def _run(self, images: list[np.ndarray], largest: float = float("inf")
             ) -> list[list[tuple[Box, float]]]:
        """dlib's detections of each image: ((x, y, w, h), score), before any filtering
        but the threshold. Faces of `largest` px or more are not wanted: the CNN then scans
        only the pyramid levels of smaller ones (`MmodDetector.scan_levels`)."""
        if self.kind == "hog":
            found = []
            for image in images:
                rects, scores, _ = self._hog.run(image, self.upsample, self.threshold)
                found.append([(from_dlib_rect(r), s) for r, s in zip(rects, scores, strict=True)])
            return found
        return [[(from_corners(*corners), score) for corners, score in detections
                 if score >= self.threshold]
                for detections in self._cnn.detect(images, self.upsample, max_side=largest)]

    def detect_many(self, images: list[np.ndarray], small_faces: bool = True
                    ) -> list[list[Detection]]:
        """`self(image, small_faces)` of each image, the images of one size scanned in one
        batch by the CNN."""
        found: list[list[Detection]] = [[] for _ in images]
        for scan in self.passes if small_faces else self.passes[:1]:
            for chunk in self._chunks(images, scan.scale):
                copies = [np.ascontiguousarray(rescale(images[i], scan.scale)) for i in chunk]
                scanned = self._run(copies, scan.largest * scan.scale)
                for i, detections in zip(chunk, scanned, strict=True):
                    self._keep(found[i], detections, scan)
        return [sorted(kept, key=lambda d: d.box[2] * d.box[3], reverse=True) for kept in found]

    def _chunks(self, images: list[np.ndarray], scale: float) -> list[list[int]]:
        """Indices of `images` in the runs of the CNN's network calls for their copies at
        `scale` (`mmod.pixel_runs`), so that one call's copies exist at a time (16 frames of
        4K upscaled 2x would be 1.6 GB); one run for HOG."""
        if self.kind == "hog":
            return [list(range(len(images)))]
        from fgnet_video.face.mmod import pixel_runs

        return pixel_runs([image.shape[0] * image.shape[1] * scale * scale
                           for image in images])

    @staticmethod
    def _keep(kept: list[Detection], detections: list[tuple[Box, float]],
              scan: DetectionPass) -> None:
        """Add to `kept` the detections of `scan` (boxes in the scanned copy's px) that are
        faces this pass looks for and not already found."""
        for (x, y, w, h), score in detections:
            box = (x / scan.scale, y / scan.scale, w / scan.scale, h / scan.scale)
            if (scan.smallest <= min(box[2], box[3]) < scan.largest
                    and score >= scan.min_score
                    and not any(same_face(box, d.box) for d in kept)):
                kept.append(Detection(box, float(score)))

    def __call__(self, image: np.ndarray, small_faces: bool = True) -> list[Detection]:
        """Detections in `image` (uint8 RGB), sorted by box area, largest first; without
        `small_faces`, the first pass only."""
        return self.detect_many([image], small_faces)[0]

    @property
    def local_redetection(self) -> bool:
        """Whether the tracker looks for a face that failed its checks around that face only
        (`in_region`: the CNN, for which a whole 720p frame costs 220-640 ms) rather than in
        the whole frame (HOG, exactly as before)."""
        return self.kind == "cnn"

    def in_region(self, image: np.ndarray, region: Region, small_faces: bool = True
                  ) -> list[Detection]:
        """`self(crop, small_faces)` of `image`'s `region`, boxes in `image` px."""
        return shifted(self(crop(image, region), small_faces), region)
