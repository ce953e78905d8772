"""What runs in a face detection worker process (`fgnet_video.face.parallel`): kept apart
from the face pipeline so that a spawned worker imports the detector alone (dlib, OpenCV),
not the video and person modules, and is ready sooner."""

from __future__ import annotations

import os
import signal

import numpy as np

from fgnet_video.face.detect import Detection, FaceDetector
from fgnet_video.options import FaceSettings
from fgnet_video.workers import follow_parent

_detector: FaceDetector | None = None


def start(settings: FaceSettings, parent: int) -> None:
    """In a worker: exit on SIGTERM (it holds no files), ignore SIGINT (the parent decides),
    stop with the parent, and load the detector once."""
    global _detector
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(143))
    follow_parent(parent)
    _detector = FaceDetector.for_settings(settings)


def ready() -> None:
    """A worker's first task: done once a worker has started."""


def detect(image: np.ndarray, small_faces: bool) -> list[Detection]:
    """The detections of `image` (with the small-face pass when `small_faces`)."""
    return _detector(image, small_faces=small_faces)
