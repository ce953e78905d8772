"""Overlay video: the analysed frames with each face's box, id and active AUs as bars.

Frames keep their presentation times (so timing matches the source, also when sampling
with --fps), the source's audio packets are copied through untouched, and video is encoded
with H.264 (libx264) by default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from fgnet_video.atomic import temporary_name
from fgnet_video.aus import au_name
from fgnet_video.errors import UserError
from fgnet_video.pipeline import ScoredFrame

BOX_COLOURS = [(46, 204, 113), (52, 152, 219), (231, 76, 60), (241, 196, 15), (155, 89, 182)]
BAR_WIDTH = 90


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float,
          colour: tuple[int, int, int]) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                max(1, int(round(scale * 2))), cv2.LINE_AA)


def _shade(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    """Darken a rectangle (clipped to the image) so text on it stays readable."""
    height, width = image.shape[:2]
    x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = (image[y0:y1, x0:x1] * (1 - alpha)).astype(np.uint8)


def draw_faces(image: np.ndarray, scored: ScoredFrame, aus: Sequence[int]) -> np.ndarray:
    """A copy of the frame with, per face, its box and id and a panel with one bar per
    active AU (length = score in [0, 1], the score printed beside its name)."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    scale = max(0.4, min(width, height) / 800)
    line = int(round(30 * scale))
    bar = int(round(BAR_WIDTH * scale / 0.6))
    label = int(round(118 * scale))
    for face, scores in zip(scored.faces, scored.scores, strict=True):
        colour = BOX_COLOURS[face.face_id % len(BOX_COLOURS)]
        x, y, w, h = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, max(2, line // 12))
        _text(canvas, f"id {face.face_id}", (x, max(line, y - line // 4)), scale, colour)
        active = [(au, float(score)) for au, score in zip(aus, scores, strict=True) if score > 0]
        if not active:
            continue
        panel_x = min(x + w + line // 3, width - label - bar - line // 2)
        panel_y = max(y, 0)
        _shade(canvas, panel_x, panel_y, panel_x + label + bar + line // 3,
               panel_y + line * len(active) + line // 3)
        for row, (au, score) in enumerate(active):
            base = panel_y + line * (row + 1)
            _text(canvas, f"{au_name(au)} {score:.2f}", (panel_x + line // 6, base - line // 5),
                  scale * 0.8, (255, 255, 255))
            left, top, bottom = panel_x + label, base - line // 2 - line // 6, base - line // 5
            cv2.rectangle(canvas, (left, top), (left + bar, bottom), (90, 90, 90), -1)
            cv2.rectangle(canvas, (left, top), (left + int(round(bar * min(score, 1.0))), bottom),
                          colour, -1)
    return canvas


class _AudioCopy:
    """Copies the source's audio packets into the output in step with the video frames,
    keeping only those between the first and the last written frame (plus one frame)."""

    def __init__(self, source: av.container.InputContainer, out: av.container.OutputContainer):
        stream = source.streams.audio[0]
        self._out = out
        self._stream = out.add_stream_from_template(stream)
        self._packets = (p for p in source.demux(stream) if p.dts is not None and p.pts is not None)
        self._next = next(self._packets, None)

    def copy_until(self, start: float, end: float) -> None:
        while self._next is not None:
            when = float(self._next.pts * self._next.time_base)
            if when > end:
                return
            if when >= start:
                self._next.stream = self._stream
                self._out.mux(self._next)
            self._next = next(self._packets, None)


class OverlayWriter:
    """Encodes overlay frames to a temporary file; `finish()` renames it into place."""

    def __init__(self, source: str | os.PathLike, target: str | os.PathLike,
                 aus: Sequence[int], codec: str = "libx264"):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_name(self.target)
        self.aus = tuple(aus)
        self._source = av.open(str(source))
        rate = self._source.streams.video[0].average_rate or 25
        self._frame_seconds = float(1 / rate)
        self._out = av.open(str(self.tmp), "w")
        try:
            self._video = self._out.add_stream(codec, rate=rate)
        except (av.error.FFmpegError, ValueError) as exc:
            self.abort()
            raise UserError(f"overlay codec {codec!r} is not available ({exc})") from None
        self._video.time_base = Fraction(1, 1_000_000)
        self._video.pix_fmt = "yuv420p"
        self._audio = _AudioCopy(self._source, self._out) if self._source.streams.audio else None
        self._size: tuple[int, int] | None = None
        self._first_time: float | None = None
        self._last_time = 0.0
        self._last_pts = -1

    def write(self, scored: ScoredFrame) -> None:
        """Draw and encode one analysed frame at its source presentation time."""
        image = draw_faces(scored.frame.image, scored, self.aus)
        if self._size is None:
            height, width = image.shape[:2]
            self._size = (width - width % 2, height - height % 2)  # yuv420p needs even sides
            self._video.width, self._video.height = self._size
            self._first_time = scored.frame.time
        width, height = self._size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]),
                                           format="rgb24")
        frame.pts = max(int(round(scored.frame.time * 1_000_000)), self._last_pts + 1)
        frame.time_base = self._video.time_base
        self._last_pts = frame.pts
        self._last_time = scored.frame.time
        if self._audio is not None:
            self._audio.copy_until(self._first_time, scored.frame.time)
        self._out.mux(self._video.encode(frame))

    def finish(self) -> Path:
        """Flush the encoder, copy the audio of the last frame, close, rename into place."""
        try:
            if self._size is not None:
                self._out.mux(self._video.encode())
                if self._audio is not None:
                    self._audio.copy_until(self._first_time,
                                           self._last_time + self._frame_seconds)
        finally:
            self._out.close()
            self._source.close()
        os.replace(self.tmp, self.target)
        return self.target

    def abort(self) -> None:
        """Close and delete the partial file."""
        for container in (getattr(self, "_out", None), self._source):
            if container is not None:
                try:
                    container.close()
                except av.error.FFmpegError:
                    pass
        self.tmp.unlink(missing_ok=True)
