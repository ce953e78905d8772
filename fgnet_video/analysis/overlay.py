"""Overlay video: the analysed frames with each face's box, id and active AUs as bars (drawn
by `fgnet_video.analysis.overlay_draw`).

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
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from fgnet_video.analysis.overlay_draw import RecentFaces, draw_faces
from fgnet_video.analysis.stream import ScoredFrame
from fgnet_video.errors import UserError

FALLBACK_TIME_BASE = Fraction(1, 1_000_000)


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
    """Encodes overlay frames into `target`, which the caller names and puts in place
    (analyze writes it under its partial name, `fgnet_video.analysis.commit.OutputUnit`);
    `abort()` deletes it.

    The source's audio comes along from `audio_from` seconds (None: from its beginning, so
    sound before the first video frame is kept as in the source) to one frame past the last
    frame written."""

    def __init__(self, source: str | os.PathLike, target: str | os.PathLike,
                 aus: Sequence[int], codec: str = "libx264", audio_from: float | None = None):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._audio_from = float("-inf") if audio_from is None else audio_from
        self.aus = tuple(aus)
        self._out = None
        self._source = av.open(str(source))
        stream = self._source.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        self._frame_seconds = float(1 / rate)
        self._time_base = stream.time_base or FALLBACK_TIME_BASE
        self._out = av.open(str(self.target), "w")
        try:
            self._video = self._video_stream(codec, rate)
            self._audio = _Audio(self._source, self._out) if self._source.streams.audio else None
        except BaseException:
            self.abort()
            raise
        self._size: tuple[int, int] | None = None
        self._recent = RecentFaces()
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
        image = _even(draw_faces(scored.frame.image, scored, self.aus,
                                 keep_clear=self._recent.unboxed(scored)))
        if self._size is None:
            height, width = image.shape[:2]
            self._size = (width, height)
            self._video.width, self._video.height = self._size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = max(int(round(scored.frame.time / self._time_base)), self._last_pts + 1)
        frame.time_base = self._time_base
        self._last_pts = frame.pts
        self._last_time = scored.frame.time
        if self._audio is not None:
            self._audio.copy_until(self._audio_from, scored.frame.time)
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
        """Flush the encoder, copy the audio of the last frame, close."""
        try:
            if self._size is not None:
                self._encode(None)
                if self._audio is not None:
                    self._audio.copy_until(self._audio_from,
                                           self._last_time + self._frame_seconds)
                    self._audio.finish()
        finally:
            self._out.close()
            self._source.close()
        return self.target

    def abort(self) -> None:
        """Close and delete the file written so far."""
        for container in (self._out, self._source):
            if container is not None:
                try:
                    container.close()
                except av.error.FFmpegError:
                    pass
        self.target.unlink(missing_ok=True)
