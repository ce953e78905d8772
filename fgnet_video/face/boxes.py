"""Arithmetic of face boxes: (x, y, w, h) in frame pixels, x and y of the top-left corner."""

from __future__ import annotations

from fgnet_video.face.landmarks import Box

SAME_FACE_COVER = 0.5  # two boxes sharing this share of the smaller one's area are one face


def overlap(a: Box, b: Box) -> float:
    """Area of the intersection of two boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(iw, 0.0) * max(ih, 0.0)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    inter = overlap(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def same_face(a: Box, b: Box) -> bool:
    """Whether two boxes sit on one face: they share at least half the smaller one's area
    (a box inside another, or two boxes of one face from different detector scales)."""
    smaller = min(a[2] * a[3], b[2] * b[3])
    return smaller > 0 and overlap(a, b) >= SAME_FACE_COVER * smaller


def centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def visible_fraction(box: Box, width: int, height: int) -> float:
    """Share of the box's area inside a width x height frame."""
    area = box[2] * box[3]
    return overlap(box, (0.0, 0.0, float(width), float(height))) / area if area > 0 else 0.0
