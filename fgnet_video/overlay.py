"""Overlay video: the analysed frames with each face's box, id and active AUs as bars.

Frames keep the source's presentation times exactly: the video is encoded (H.264 by default)
in the source stream's time base, so variable frame rates, millisecond timestamps and
sampling with --fps all come out as they went in. The source's first audio stream follows:
its packets are copied when the output container can hold its codec, else it is transcoded
to the container's default audio codec (AAC for MP4). Odd frame sides are padded by one
edge pixel (H.264 in yuv420p needs even sides), so even a 1x1 video gets an overlay.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_COLOUR = (255, 255, 255)
BAR_BACKGROUND = (90, 90, 90)
FALLBACK_TIME_BASE = Fraction(1, 1_000_000)


# -- drawing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Style:
    """Sizes for one frame size: everything scales with the frame's shorter side."""

    font_scale: float
    thickness: int  # of text strokes
    line: int  # of the face box
    pad: int  # space around text and between panel columns
    row: int  # height of one AU row (and of the id label)
    bar: int  # length of a full bar

    @classmethod
    def for_frame(cls, width: int, height: int) -> _Style:
        font_scale = max(0.35, min(width, height) / 900)
        thickness = max(1, int(font_scale * 2))
        (text_width, text_height), baseline = cv2.getTextSize("AU00 0.00", FONT, font_scale,
                                                              thickness)
        pad = max(2, text_height // 3)
        return cls(font_scale, thickness, line=max(1, round(min(width, height) / 300)),
                   pad=pad, row=text_height + baseline + pad, bar=text_width)

    def text_width(self, text: str) -> int:
        return cv2.getTextSize(text, FONT, self.font_scale, self.thickness)[0][0]

    def text(self, image: np.ndarray, text: str, left: int, top: int,
             colour: tuple[int, int, int]) -> None:
        """Draw `text` in a row whose top edge is at `top` (baseline placed inside it)."""
        (_, text_height), _ = cv2.getTextSize(text, FONT, self.font_scale, self.thickness)
        baseline_y = top + (self.row + text_height) // 2 - 1
        cv2.putText(image, text, (left, baseline_y), FONT, self.font_scale, colour,
                    self.thickness, cv2.LINE_AA)


def _shade(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    """Darken a rectangle (clipped to the image) so text on it stays readable."""
    height, width = image.shape[:2]
    x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = (image[y0:y1, x0:x1] * (1 - alpha)).astype(np.uint8)


def _inside(start: int, size: int, limit: int) -> int:
    """`start` moved so that [start, start + size) lies within [0, limit) (0 when too big)."""
    return max(0, min(start, limit - size))


def _id_label(canvas: np.ndarray, style: _Style, text: str, box: tuple[int, int, int, int],
              colour: tuple[int, int, int]) -> None:
    """The face's id on a shaded tag: above the box, or inside its top edge when the box
    touches the frame's top; always within the frame."""
    height, width = canvas.shape[:2]
    x, y, w, h = box
    tag_width, tag_height = style.text_width(text) + 2 * style.pad, style.row
    top = y - tag_height if y - tag_height >= 0 else max(y, 0) + style.line
    left, top = _inside(x, tag_width, width), _inside(top, tag_height, height)
    _shade(canvas, left, top, left + tag_width, top + tag_height)
    style.text(canvas, text, left + style.pad, top, colour)


def _panel(canvas: np.ndarray, style: _Style, rows: list[tuple[str, float]],
           box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    """One row per active AU (name and score, then a bar as long as the score) on a shaded
    panel beside the box: right of it when that fits, else left of it, else at the frame's
    right edge. The text column is as wide as its widest row, so text never meets a bar."""
    height, width = canvas.shape[:2]
    x, y, w, h = box
    text_column = max(style.text_width(text) for text, _ in rows)
    panel_width = text_column + style.bar + 3 * style.pad
    panel_height = style.row * len(rows) + style.pad
    if x + w + style.pad + panel_width <= width:
        left = x + w + style.pad
    elif x - style.pad - panel_width >= 0:
        left = x - style.pad - panel_width
    else:
        left = width - panel_width
    left, top = _inside(left, panel_width, width), _inside(y, panel_height, height)
    _shade(canvas, left, top, left + panel_width, top + panel_height)
    bar_left = left + 2 * style.pad + text_column
    bar_height = max(2, style.row // 2)
    for index, (text, score) in enumerate(rows):
        row_top = top + style.pad // 2 + index * style.row
        style.text(canvas, text, left + style.pad, row_top, TEXT_COLOUR)
        bar_top = row_top + (style.row - bar_height) // 2
        bottom = bar_top + bar_height - 1
        cv2.rectangle(canvas, (bar_left, bar_top), (bar_left + style.bar - 1, bottom),
                      BAR_BACKGROUND, -1)
        filled = int(round(style.bar * min(score, 1.0)))
        if filled:
            cv2.rectangle(canvas, (bar_left, bar_top), (bar_left + filled - 1, bottom), colour,
                          -1)


def draw_faces(image: np.ndarray, scored: ScoredFrame, aus: Sequence[int]) -> np.ndarray:
    """A copy of the frame with, per face, its box, its id on a tag and a panel with one bar
    per active AU (length = score in [0, 1], the score printed beside its name). Sizes scale
    with the frame; tags and panels stay inside it."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    style = _Style.for_frame(width, height)
    for face, scores in zip(scored.faces, scored.scores, strict=True):
        colour = BOX_COLOURS[face.face_id % len(BOX_COLOURS)]
        box = tuple(int(round(v)) for v in face.box)
        x, y, w, h = box
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, style.line)
        _id_label(canvas, style, f"id {face.face_id}", box, colour)
        rows = [(f"{au_name(au)} {score:.2f}", float(score))
                for au, score in zip(aus, scores, strict=True) if score > 0]
        if rows:
            _panel(canvas, style, rows, box, colour)
    return canvas


# -- audio -----------------------------------------------------------------------------------

class _Audio:
    """The source's first audio stream in the output, in step with the video frames, keeping
    only what lies between the first written frame and one frame past the last. Packets are
    copied when the output container can hold the codec; otherwise they are decoded and
    encoded with the container's default audio codec."""

    def __init__(self, source: av.container.InputContainer, out: av.container.OutputContainer):
        stream = source.streams.audio[0]
        self._out = out
        self._copy = stream.codec_context.name in out.supported_codecs
        if self._copy:
            self._stream = out.add_stream_from_template(stream)
        else:
            self._stream = self._encoder(stream, out)
        self._source_stream = stream
        self._next_pts: int | None = None  # of the next encoded frame, in samples
        self._items = self._timed_items(source.demux(stream))
        self._next = next(self._items, None)

    @staticmethod
    def _encoder(stream: av.audio.AudioStream, out: av.container.OutputContainer
                 ) -> av.audio.AudioStream:
        codec_name = out.default_audio_codec
        try:
            rates = av.Codec(codec_name, "w").audio_rates or ()
            rate = stream.codec_context.sample_rate
            if rates and rate not in rates:
                rate = min(rates, key=lambda r: abs(r - rate))
            encoder = out.add_stream(codec_name, rate=rate)
        except (av.error.FFmpegError, ValueError) as exc:
            raise UserError(f"overlay: the source's {stream.codec_context.name} audio cannot "
                            f"be written to {out.format.name} ({exc}); use an .mp4 overlay"
                            ) from None
        # The default layout of the channel count: WMA's layouts, for one, leave the channel
        # order unspecified, which encoders refuse.
        encoder.layout = av.AudioLayout(f"{stream.codec_context.layout.nb_channels}c")
        return encoder

    def _timed_items(self, packets: Iterator[av.Packet]) -> Iterator[tuple[float, object]]:
        """(time in s, packet to copy or frame to encode), in stream order."""
        for packet in packets:
            if packet.pts is None or (self._copy and packet.dts is None):
                continue
            if self._copy:
                yield float(packet.pts * packet.time_base), packet
                continue
            try:
                frames = self._source_stream.decode(packet)
            except av.error.FFmpegError:
                continue  # a damaged audio packet: its sound is left out
            for frame in frames:
                if frame.pts is not None:
                    yield float(frame.pts * frame.time_base), frame

    def copy_until(self, start: float, end: float) -> None:
        """Write the audio up to time `end`, dropping what lies before `start`."""
        while self._next is not None:
            when, item = self._next
            if when > end:
                return
            if when >= start:
                if self._copy:
                    item.stream = self._stream
                    self._out.mux(item)
                else:
                    self._encode(item)
            self._next = next(self._items, None)

    def _encode(self, frame: av.AudioFrame) -> None:
        """Encode one decoded frame, timed by counting samples from the first one written:
        decoders' frame times may overlap (WMA's do), encoders need a gapless clock."""
        if self._next_pts is None:
            self._next_pts = round(frame.time * frame.sample_rate)
        frame.pts = self._next_pts
        frame.time_base = Fraction(1, frame.sample_rate)
        self._next_pts += frame.samples
        self._out.mux(self._stream.encode(frame))

    def finish(self) -> None:
        """Flush the encoder (nothing to do when copying)."""
        if not self._copy:
            self._out.mux(self._stream.encode(None))


# -- the writer ------------------------------------------------------------------------------

def _even(image: np.ndarray) -> np.ndarray:
    """The image with an odd side grown by one repeated edge pixel (yuv420p needs even
    sides)."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


class OverlayWriter:
    """Encodes overlay frames to a temporary file; `finish()` renames it into place."""

    def __init__(self, source: str | os.PathLike, target: str | os.PathLike,
                 aus: Sequence[int], codec: str = "libx264"):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_name(self.target)
        self.aus = tuple(aus)
        self._out = None
        self._source = av.open(str(source))
        stream = self._source.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        self._frame_seconds = float(1 / rate)
        self._time_base = stream.time_base or FALLBACK_TIME_BASE
        self._out = av.open(str(self.tmp), "w")
        try:
            self._video = self._video_stream(codec, rate)
            self._audio = _Audio(self._source, self._out) if self._source.streams.audio else None
        except BaseException:
            self.abort()
            raise
        self._size: tuple[int, int] | None = None
        self._first_time: float | None = None
        self._last_time = 0.0
        self._last_pts = -1

    def _video_stream(self, codec: str, rate: Fraction | int) -> av.video.VideoStream:
        """The output video stream, timed in the source's time base (a UserError when the
        codec is missing)."""
        try:
            stream = self._out.add_stream(codec, rate=rate)
        except (av.error.FFmpegError, ValueError) as exc:
            raise UserError(f"overlay codec {codec!r} is not available ({exc})") from None
        stream.time_base = self._time_base
        stream.codec_context.time_base = self._time_base
        stream.pix_fmt = "yuv420p"
        return stream

    def write(self, scored: ScoredFrame) -> None:
        """Draw and encode one analysed frame at its source presentation time."""
        image = _even(draw_faces(scored.frame.image, scored, self.aus))
        if self._size is None:
            height, width = image.shape[:2]
            self._size = (width, height)
            self._video.width, self._video.height = self._size
            self._first_time = scored.frame.time
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = max(int(round(scored.frame.time / self._time_base)), self._last_pts + 1)
        frame.time_base = self._time_base
        self._last_pts = frame.pts
        self._last_time = scored.frame.time
        if self._audio is not None:
            self._audio.copy_until(self._first_time, scored.frame.time)
        self._encode(frame)

    def _encode(self, frame: av.VideoFrame | None) -> None:
        """Encode one frame (None flushes) and mux the packets; an encoder's refusal is a
        UserError."""
        try:
            self._out.mux(self._video.encode(frame))
        except av.error.FFmpegError as exc:
            raise UserError(f"{self.target}: the overlay could not be encoded "
                            f"({getattr(exc, 'strerror', None) or exc})") from None

    def finish(self) -> Path:
        """Flush the encoder, copy the audio of the last frame, close, rename into place."""
        try:
            if self._size is not None:
                self._encode(None)
                if self._audio is not None:
                    self._audio.copy_until(self._first_time,
                                           self._last_time + self._frame_seconds)
                    self._audio.finish()
        finally:
            self._out.close()
            self._source.close()
        os.replace(self.tmp, self.target)
        return self.target

    def abort(self) -> None:
        """Close and delete the partial file."""
        for container in (self._out, self._source):
            if container is not None:
                try:
                    container.close()
                except av.error.FFmpegError:
                    pass
        self.tmp.unlink(missing_ok=True)
