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
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from fgnet_video.errors import UserError
from fgnet_video.options import SamplingSettings
from fgnet_video.paths import special_file_kind
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
    try:
        status = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    if not stat.S_ISREG(status.st_mode):  # not opened: a FIFO would block, a device never ends
        raise UserError(f"{path}: is {special_file_kind(status.st_mode)}, not a regular "
                        "video file")
    if status.st_size == 0:
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


def _declared_length(container: av.container.InputContainer) -> float | None:
    """Seconds the file's header says its video stream lasts, counted from time 0 (or from a
    negative first timestamp); None when no header says it.

    Read from MP4/MOV track durations, AVI stream lengths and Matroska DURATION tags; a
    Matroska segment's or an ASF/WMV file's duration counts only when the video is the
    file's only stream (it covers every stream, and audio may last longer). Other demuxers
    (MPEG-TS, MPEG-PS, raw streams) estimate a duration from the file's own last timestamps
    or its bitrate, which cannot reveal a cut. Formats differ on whether a duration counts
    from 0 or from the first timestamp, so a positive start offset is not added: a stream is
    never expected to last longer than declared.
    """
    stream = container.streams.video[0]
    formats = set(container.format.name.split(","))
    time_base = stream.time_base or 0
    length = None
    if "avi" in formats:  # the header's length in frames, one time-base unit each
        length = float(stream.frames * time_base) or None
    elif "mov" in formats:
        length = float((stream.duration or 0) * time_base) or None
    elif "matroska" in formats:
        length = _duration_tag(stream)
    if length is None and formats & {"matroska", "asf"} and len(container.streams) == 1:
        length = (container.duration or 0) / av.time_base or None
    if length is None:
        return None
    start = float((stream.start_time or 0) * time_base)
    return length + min(start, 0.0)


def _duration_tag(stream: av.video.stream.VideoStream) -> float | None:
    """A Matroska track's DURATION tag ('HH:MM:SS.nnnnnnnnn', written by FFmpeg and
    mkvmerge) in seconds; None when it has none or it does not parse."""
    for key, value in stream.metadata.items():
        if key.upper().partition("-")[0] == "DURATION":  # 'DURATION-eng' with a language
            hours, _, rest = value.partition(":")
            minutes, _, seconds = rest.partition(":")
            try:
                return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            except ValueError:
                return None
    return None


def _ends_inside_transport_packet(path: Path) -> bool:
    """Whether an MPEG transport stream file ends inside a packet (188 bytes, 192 in M2TS,
    204 with error correction): a complete file holds whole packets, a cut one rarely does."""
    with path.open("rb") as file:
        head = file.read(3 * 204 + 4)
    for size, sync_at in ((188, 0), (192, 4), (204, 0)):
        if all(head[sync_at + i * size: sync_at + i * size + 1] == b"\x47" for i in range(3)):
            return path.stat().st_size % size != 0
    return False


class FrameSpacing:
    """Running facts of the decoded frames' presentation times (in presentation order)."""

    VARIABLE_RATIO = 1.1  # longest / shortest frame interval above which the rate varies

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0
        self.shortest = self.longest = None

    def add(self, time: float) -> None:
        if self.count:
            interval = time - self.last
            if interval > 0:
                self.shortest = interval if self.shortest is None else min(self.shortest,
                                                                            interval)
                self.longest = interval if self.longest is None else max(self.longest, interval)
        else:
            self.first = time
        self.last = time
        self.count += 1

    def summary(self) -> dict:
        """fps_measured = (frames - 1) / (last time - first time), the real average rate; the
        shortest and longest interval between consecutive frames (s); variable_frame_rate
        when the longest exceeds the shortest by over 10% (millisecond-rounded timestamps of
        a constant rate stay under it). None where fewer than two frames were decoded."""
        span = self.last - self.first
        measured = (self.count - 1) / span if self.count > 1 and span > 0 else None
        variable = (None if self.shortest is None
                    else self.longest > self.shortest * self.VARIABLE_RATIO)
        return {"fps_measured": measured, "frame_interval_min": self.shortest,
                "frame_interval_max": self.longest, "variable_frame_rate": variable}


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

    The constructor raises UserError for a missing, empty, special (FIFO, device),
    non-video or stream-less file. `truncated` is None after a complete read, else a
    one-line reason; the reader reports it only there (callers say it in their own words).
    A stream counts as truncated when decoding met corrupt data or an error, when it ends
    clearly (over 2 frame intervals and 0.1 s) before the length its header declares (see
    `_declared_length`; the last frame's own length counts), or when an MPEG-TS file ends
    inside a packet. Reading stopped by `end` is never truncated.
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
        self._stream_end = 0.0  # end of the latest decoded frame (its time + its length)
        self._spacing = FrameSpacing()

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
            # frames drained from the decoder after a break carry no time base of their own
            time_base = self._container.streams.video[0].time_base
            for av_frame in self._decoded_frames():
                frame_base = av_frame.time_base or time_base
                if av_frame.pts is not None and frame_base:
                    time = float(av_frame.pts * frame_base)
                else:  # no timestamp: continue from the previous one at the nominal rate
                    time = previous_time + step if previous_time is not None else 0.0
                previous_time = time
                self._spacing.add(time)
                length = float(av_frame.duration * frame_base) if av_frame.duration else step
                self._stream_end = max(self._stream_end, time + length)
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
            self.truncated = self.truncated or self._cut_short()
        finally:
            self._container.close()

    def _cut_short(self) -> str | None:
        """Why a stream that decoded to its end without an error is still incomplete (it
        ends clearly before its declared length, or its MPEG-TS file ends inside a packet);
        None when nothing says so."""
        declared = _declared_length(self._container)
        slack = max(0.1, 2.0 / self.info.fps if self.info.fps else 0.0)
        if declared is not None and self._stream_end < declared - slack:
            return (f"the stream ends at {self._stream_end:.2f} s of the {declared:.2f} s "
                    "its header declares")
        if (self._container.format.name == "mpegts"
                and _ends_inside_transport_packet(self.path)):
            return "the file ends inside an MPEG-TS packet (cut off)"
        return None

    def frame_timing(self) -> dict:
        """The frame rate as the timestamps of the frames decoded so far show it
        (`FrameSpacing.summary`); `info.fps` is the rate the header declares."""
        return self._spacing.summary()

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
