"""Shot cuts: a hard change of the whole frame between two consecutive frames.

A face tracked across a cut would carry its id onto whoever stands where it stood in the
next shot, so the tracker ends every track at a cut (`fgnet_video.face.track`).

Each frame is reduced to a 64x36 HSV thumbnail (area averaging, hue on OpenCV's full
0-255 circle). The change between consecutive frames is the mean over the thumbnail's
pixels and its three channels of the absolute difference (the hue difference taken the
short way round the circle, so at most 128):

    change = mean_{pixels, channels} |thumb_t - thumb_{t-1}|

and a cut is a change of more than CUT_CHANGE. Measured on the shared recordings
(`../shared/media`): a talking head, a webcam with a lamp sweeping light across the face,
a lab recording and a sample clip stay under 11 between any two frames (medians 0.8-2.9);
the hard cut of the phone clip gives 88 and 142 on its two frames.
"""

from __future__ import annotations

import cv2
import numpy as np

CUT_CHANGE = 30.0  # mean absolute HSV change (0-255 scale) above which frames are a cut
THUMBNAIL = (64, 36)  # width, height of the compared thumbnails


def thumbnail(image: np.ndarray) -> np.ndarray:
    """(36, 64, 3) float32 HSV thumbnail of a uint8 RGB frame (hue 0-255)."""
    small = cv2.resize(image, THUMBNAIL, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)


def frame_change(before: np.ndarray, after: np.ndarray) -> float:
    """The module docstring's `change` between two thumbnails."""
    difference = np.abs(after - before)
    hue = difference[..., 0]
    np.minimum(hue, 256.0 - hue, out=hue)
    return float(difference.mean())


class CutDetector:
    """Feed the frames of one clip in order: `is_cut(frame)` says whether a cut lies between
    the previous frame and this one (never for the first)."""

    def __init__(self, threshold: float = CUT_CHANGE) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Start a new clip."""
        self._previous: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        current = thumbnail(image)
        previous, self._previous = self._previous, current
        return previous is not None and frame_change(previous, current) > self.threshold
