"""Video decoding with PyAV: RGB frames with their index and presentation time.

`VideoReader` decodes in a background thread into a bounded queue, so decoding overlaps the
consumer's work while memory stays bounded. Any container and codec FFmpeg reads works;
rotation metadata (the display matrix) is applied, every pixel format (10-bit, gray, odd
sizes) is converted to 8-bit RGB by swscale, and variable frame rate is handled by using each
frame's own presentation timestamp.

Frame selection happens on timestamps: `start <= time < end`, and with `fps` the first frame
of every 1/fps slot counted from `start` (or from the first frame). Frame indices always count
every decoded frame from the start of the stream, whatever is selected.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from fgnet_video.errors import UserError
from fgnet_video.options import SamplingSettings
from fgnet_video.threads import background

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".mts", ".m2ts", ".ts", ".3gp", ".ogv")


class TruncatedVideoWarning(UserWarning):
    """`read_frames`: the stream broke off before its end; the frames before the break were
    delivered."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    `index` counts every decoded frame of the stream from 0 (whatever was selected); `time`
    is the frame's presentation timestamp in seconds (pts x time_base, as stored).
    """

    index: int
    time: float
    image: np.ndarray  # (H, W, 3) uint8 RGB, rotation applied, C-contiguous


@dataclass(frozen=True)
class VideoInfo:
    """What the container and the first decoded frame say about the video stream."""

    path: Path
    codec: str
    width: int  # as displayed, i.e. after rotation
    height: int
    fps: float | None  # average frame rate, None when unknown
    frame_count: int | None  # declared number of frames, None when unknown
    duration: float | None  # seconds, None when unknown
    rotation: int  # degrees counter-clockwise applied to decoded frames


def _open_container(path: Path) -> av.container.InputContainer:
    """Open `path` for reading or raise one UserError line saying why it cannot be read."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes), not a video")
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise UserError(f"{path}: not a readable video ({_ffmpeg_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path}: contains no video stream")
    return container


def _ffmpeg_reason(exc: BaseException) -> str:
    """The human part of an FFmpeg error ('Invalid data found when processing input')."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _first_frame(container: av.container.InputContainer) -> av.VideoFrame | None:
    """The first decodable frame of the video stream, None when there is none."""
    stream = container.streams.video[0]
    try:
        for packet in container.demux(stream):
            for frame in stream.decode(packet):
                return frame
        for frame in stream.codec_context.decode(None):
            return frame
    except av.error.FFmpegError:
        pass
    return None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Facts of the video at `path` (decodes its first frame for the rotation).

    Raises UserError when the file is missing, empty, not a video, has no video stream or
    no decodable frame.
    """
    path = Path(path)
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        first = _first_frame(container)
        if first is None:
            raise UserError(f"{path}: not a readable video (no frame could be decoded)")
        rotation = _quarter_turns(first.rotation or 0) * 90
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        return VideoInfo(
            path=path,
            codec=stream.codec_context.name,
            width=width,
            height=height,
            fps=float(rate) if rate else None,
            frame_count=stream.frames or None,
            duration=duration,
            rotation=rotation,
        )
    finally:
        container.close()


def _quarter_turns(degrees: float) -> int:
    """Nearest multiple of 90 degrees, as a count of counter-clockwise quarter turns in 0..3."""
    return int(round(degrees / 90.0)) % 4


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """8-bit RGB array of a decoded frame with its display rotation applied."""
    image = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame.rotation or 0)
    if turns:
        image = np.rot90(image, turns)
    return np.ascontiguousarray(image)


class FrameSelector:
    """Decides from timestamps which frames to keep: `start <= t < end`, at most `fps` per s.

    With `fps`, time is cut into slots of 1/fps seconds from `start` (or the first frame's
    time) and the first frame in each slot is kept, which works for variable frame rates too.
    """

    def __init__(self, fps: float | None = None, start: float | None = None,
                 end: float | None = None) -> None:
        SamplingSettings(fps, start, end)  # the one check of these values
        self.fps, self.start, self.end = fps, start, end
        self._origin: float | None = start
        self._last_slot = -1

    def past_end(self, time: float) -> bool:
        """True once frames are at or beyond `end` (decoding can stop)."""
        return self.end is not None and time >= self.end

    def keep(self, time: float) -> bool:
        """Whether the frame at `time` is selected (call once per frame, in order)."""
        if self.start is not None and time < self.start:
            return False
        if self.past_end(time):
            return False
        if self.fps is None:
            return True
        if self._origin is None:
            self._origin = time
        slot = math.floor((time - self._origin) * self.fps + 1e-6)
        if slot <= self._last_slot:
            return False
        self._last_slot = slot
        return True


class VideoReader:
    """Iterate the selected frames of one video; decoding runs in its own thread
    (`fgnet_video.threads.background`), at most `queue_size` frames ahead.

    Usage: the caller owns the reader and closes it (a `with` block)::

        with VideoReader("clip.mp4", fps=5) as reader:
            for frame in reader:
                ...
        if reader.truncated:
            ...  # the stream broke off; frames before the break were delivered

    The constructor raises UserError for a missing, empty, non-video or stream-less file.
    `truncated` is None after a complete read, else a one-line reason; the reader reports
    it only there (callers say it in their own words).
    """

    def __init__(self, path: str | os.PathLike, *, fps: float | None = None,
                 start: float | None = None, end: float | None = None,
                 queue_size: int = 8) -> None:
        self.path = Path(path)
        self._selector = FrameSelector(fps, start, end)
        self.info = probe(self.path)
        self._container = _open_container(self.path)
        self._queue_size = queue_size
        self.truncated: str | None = None
        self._frames: Iterator[Frame] | None = None
        self._decoded = 0

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in presentation order; records why the stream broke, if it did."""
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for packet in self._container.demux(stream):
                if packet.is_corrupt:  # e.g. the cut-off last packet of a truncated file
                    self.truncated = "incomplete or corrupt data"
                    break
                for frame in stream.decode(packet):
                    if frame.is_corrupt:
                        self.truncated = "a frame was decoded from corrupt data"
                        return
                    yield frame
        except av.error.FFmpegError as exc:
            self.truncated = f"decoding stopped at an error: {_ffmpeg_reason(exc)}"
        if self.truncated:
            try:  # frames the decoder still holds (reordering delay) came before the break
                yield from stream.codec_context.decode(None)
            except av.error.FFmpegError:
                pass

    def _selected_frames(self) -> Iterator[Frame]:
        """The selected frames as RGB (runs in the decode thread; closes the file at its
        end, also when the consumer stops early)."""
        try:
            previous_time: float | None = None
            step = 1.0 / self.info.fps if self.info.fps else 0.0
            for av_frame in self._decoded_frames():
                if av_frame.time is not None:
                    time = float(av_frame.time)
                else:  # no timestamp: continue from the previous one at the nominal rate
                    time = previous_time + step if previous_time is not None else 0.0
                previous_time = time
                index = self._decoded
                self._decoded += 1
                if self._selector.past_end(time):
                    return
                if self._selector.keep(time):
                    yield Frame(index, time, to_rgb(av_frame))
            if self._decoded == 0:
                reason = self.truncated or "no frame could be decoded"
                self.truncated = None
                raise UserError(f"{self.path}: not a readable video ({reason})")
            declared = self.info.frame_count
            if self.truncated is None and declared and self._decoded < declared:
                self.truncated = (f"stream ended after {self._decoded} of {declared} "
                                  "declared frames")
        finally:
            self._container.close()

    def __iter__(self) -> Iterator[Frame]:
        if self._frames is not None:
            raise RuntimeError("a VideoReader can be iterated only once")
        self._frames = background(self._selected_frames(), maxsize=self._queue_size,
                                  name=f"decode:{self.path.name}")
        return self._frames

    def close(self) -> None:
        """Stop decoding and release the file (safe to call more than once)."""
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]  # joins the decode thread
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_frames(path: str | os.PathLike, *, fps: float | None = None,
                start: float | None = None, end: float | None = None) -> Iterator[Frame]:
    """Generator over the selected frames of `path` (a VideoReader that closes itself); a
    truncated stream is reported as a TruncatedVideoWarning at its end (use VideoReader to
    read `truncated` instead)."""
    with VideoReader(path, fps=fps, start=start, end=end) as reader:
        yield from reader
    if reader.truncated:
        warnings.warn(f"{path}: truncated video: {reader.truncated}", TruncatedVideoWarning,
                      stacklevel=2)
