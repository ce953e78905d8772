"""dlib's 68-point landmark predictor, with its model file found in face_recognition_models.

The package `face_recognition_models` only ships the model files; it is located with
importlib (never imported: its __init__ needs pkg_resources). dlib itself is imported on first
use (`dlib_module`), so what never touches a face detector (analyze replaying saved tracks,
train and evaluate on preprocessed faces) runs where dlib is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fgnet_video.errors import UserError, interruption_behind

if TYPE_CHECKING:
    import dlib

LANDMARKS_MODEL = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_MODEL = "mmod_human_face_detector.dat"

Box = tuple[float, float, float, float]  # x, y, width, height in pixels


def dlib_module():
    """The dlib module, imported now; a missing dlib is one line saying how to install it."""
    try:
        import dlib
    except ImportError as exc:
        if (interrupt := interruption_behind(exc)) is not None:  # a signal during the import
            raise interrupt from None
        if importlib.util.find_spec("dlib") is not None:  # there, but it does not load
            raise UserError(f"dlib could not be imported ({exc})") from exc
        raise UserError("dlib is not installed, and face detection needs it "
                        "(pip install dlib-bin)") from exc
    return dlib


def model_file(name: str) -> Path:
    """Path of a dlib model file shipped in the face_recognition_models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the face_recognition_models package is not installed "
                        "(pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise UserError(f"dlib model file missing: {path}")
    return path


def to_dlib_rect(box: Box) -> dlib.rectangle:
    """dlib's inclusive integer rectangle for a (x, y, w, h) box."""
    x, y, w, h = box
    left, top = int(round(x)), int(round(y))
    return dlib_module().rectangle(left, top, left + max(int(round(w)), 1) - 1,
                                   top + max(int(round(h)), 1) - 1)


def from_corners(left: int, top: int, right: int, bottom: int) -> Box:
    """(x, y, w, h) of dlib's inclusive rectangle (width = right - left + 1)."""
    return (float(left), float(top), float(right - left + 1), float(bottom - top + 1))


def from_dlib_rect(rect: dlib.rectangle) -> Box:
    """(x, y, w, h) of a dlib rectangle."""
    return from_corners(rect.left(), rect.top(), rect.right(), rect.bottom())


class LandmarkPredictor:
    """68 facial landmarks (source pixels, iBUG 300-W order) of the face in a box.

    One instance per thread: dlib objects are not shared across threads here.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else model_file(LANDMARKS_MODEL)
        self._predictor = dlib_module().shape_predictor(str(self.path))

    def __call__(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float64 landmarks of the face in `box` of a uint8 RGB (or gray) image.

        The box may reach past the image edges (dlib then reads the missing pixels as 0).
        """
        shape = self._predictor(image, to_dlib_rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
