"""Video decoding: timestamps, sampling, rotation, pixel formats, broken and non-video input."""

from __future__ import annotations

import os
import threading
import warnings
from fractions import Fraction
from pathlib import Path
from time import monotonic

import av
import numpy as np
import pytest
from av.bitstream import BitStreamFilterContext

from fgnet_video.errors import UserError
from fgnet_video.media.video import (
    FrameSelector,
    TruncatedVideoWarning,
    VideoReader,
    probe,
    read_frames,
)

from .conftest import shared_path


def pyav_reference(path: Path) -> list[tuple[float, np.ndarray]]:
    """(pts in seconds, rgb24 array) of every frame, straight from PyAV."""
    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24"))
                for f in container.decode(video=0)]


def write_video(path: Path, frames: list[np.ndarray], *, codec: str = "libx264",
                pix_fmt: str = "yuv420p", rate: int = 25, pts: list[int] | None = None,
                time_base: Fraction | None = None, rotation: int | None = None,
                options: dict | None = None) -> Path:
    """Encode RGB frames with PyAV (optionally with explicit pts or a display rotation)."""
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def remux(source: Path, path: Path, *, shift: int = 0, time_base: Fraction | None = None,
          options: dict | None = None) -> Path:
    """Copy the video packets of `source` (H.264 in MP4) into the container `path`'s suffix
    names, without re-encoding: timestamps moved `shift` time-base units earlier, the output
    stream in `time_base` when given; AVI gets the Annex B form of H.264 it needs."""
    with av.open(str(source)) as src, av.open(str(path), "w", options=options or {}) as dst:
        video = src.streams.video[0]
        stream = dst.add_stream_from_template(video)
        if time_base is not None:
            stream.time_base = time_base
        annexb = (BitStreamFilterContext("h264_mp4toannexb", video, stream)
                  if path.suffix == ".avi" else None)
        for packet in src.demux(video):
            if packet.dts is None:  # the demuxer's empty end-of-stream packet
                continue
            packet.pts -= shift
            packet.dts -= shift
            for out in annexb.filter(packet) if annexb else [packet]:
                out.stream = stream
                dst.mux(out)
    return path


def cut(path: Path, fraction: float) -> Path:
    """A copy of `path` holding only the first `fraction` of its bytes ('cut_<name>')."""
    data = path.read_bytes()
    cut_path = path.with_name(f"cut_{path.name}")
    cut_path.write_bytes(data[: int(len(data) * fraction)])
    return cut_path


def read_all(path: Path) -> tuple[list, str | None]:
    """(every frame, `truncated`) of one complete read; fails on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader reports truncation only in `truncated`
        with VideoReader(path) as reader:
            frames = list(reader)
    return frames, reader.truncated


def pattern(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth frame with a bright block in its top-left corner (orientation marker)."""
    yy, xx = np.mgrid[:height, :width]
    image = np.stack([xx * 200 // max(width, 1), yy * 200 // max(height, 1),
                      np.full_like(xx, 60 + seed)], axis=-1).astype(np.uint8)
    image[: height // 4, : width // 4] = 255
    return image


@pytest.mark.parametrize("name", ["vox_talking.mp4", "sample_disfa.avi"])
def test_frames_match_an_independent_pyav_pass(name):
    path = shared_path("media", name)
    expected = pyav_reference(path)
    with VideoReader(path) as reader:
        frames = list(reader)
    assert reader.truncated is None
    assert [f.index for f in frames] == list(range(len(expected)))
    assert [f.time for f in frames] == pytest.approx([t for t, _ in expected], abs=1e-9)
    for frame, (_, image) in zip(frames[::7], expected[::7], strict=False):
        assert frame.image.dtype == np.uint8 and frame.image.flags.c_contiguous
        np.testing.assert_array_equal(frame.image, image)
    info = probe(path)
    assert info.frame_count == len(expected) and info.rotation == 0
    assert (info.height, info.width) == frames[0].image.shape[:2]


def test_fps_sampling_and_start_end_by_timestamp():
    path = shared_path("media", "vox_talking.mp4")  # 25 fps
    sampled = list(read_frames(path, fps=5, start=1.0, end=3.0))
    assert [f.index for f in sampled] == list(range(25, 75, 5))
    window = list(read_frames(path, start=2.0, end=2.5))
    assert [f.index for f in window] == list(range(50, 63))
    assert all(2.0 <= f.time < 2.5 for f in window)
    assert len(list(read_frames(path, fps=100))) == 118  # above the stream rate: every frame


def test_frame_selector_rejects_bad_options():
    for kwargs in ({"fps": 0}, {"fps": -2}, {"start": -1}, {"start": 3, "end": 2}):
        with pytest.raises(UserError):
            FrameSelector(**kwargs)


def test_variable_frame_rate_keeps_each_frames_own_time(tmp_path):
    pts_ms = [0, 40, 50, 130, 400, 410, 700, 1000]
    frames = [pattern(48, 64, seed=i) for i in range(len(pts_ms))]
    path = write_video(tmp_path / "vfr.mkv", frames, codec="mpeg4", rate=25, pts=pts_ms,
                       time_base=Fraction(1, 1000))
    times = [f.time for f in read_frames(path)]
    assert times == pytest.approx([t / 1000 for t in pts_ms], abs=1e-6)
    # 5 fps slots of 0.2 s from the first frame: 0, 0.4, 0.7 (slot 3), 1.0 (slot 5)
    assert [f.time for f in read_frames(path, fps=5)] == pytest.approx([0.0, 0.4, 0.7, 1.0])


@pytest.mark.parametrize("degrees, turns", [(90, 1), (-90, -1), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path, degrees, turns):
    image = pattern(48, 64)
    path = write_video(tmp_path / "rot.mp4", [image] * 3, rotation=degrees)
    frame = next(iter(read_frames(path)))
    expected = np.rot90(image, turns)  # counter-clockwise quarter turns
    assert frame.image.shape == expected.shape
    assert np.abs(frame.image.astype(int) - expected).mean() < 6  # codec loss only
    assert probe(path).rotation % 360 == degrees % 360


@pytest.mark.parametrize("pix_fmt, size", [("yuv420p10le", (37, 51)), ("gray", (30, 41)),
                                           ("yuv444p", (25, 33))])
def test_odd_sizes_ten_bit_and_gray_become_8bit_rgb(tmp_path, pix_fmt, size):
    image = pattern(*size)
    if pix_fmt == "gray":
        image = np.repeat(image[..., :1], 3, axis=2)
    path = write_video(tmp_path / "f.mkv", [image] * 2, codec="ffv1", pix_fmt=pix_fmt)
    frames = list(read_frames(path))
    assert len(frames) == 2
    assert frames[0].image.shape == (*size, 3) and frames[0].image.dtype == np.uint8
    assert np.abs(frames[0].image.astype(int) - image).mean() < 8  # colour conversion only


def test_truncated_avi_yields_the_frames_before_the_break(tmp_path):
    source = shared_path("media", "sample_disfa.avi")
    data = source.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    full = pyav_reference(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader reports truncation only in `truncated`
        with VideoReader(cut) as reader:
            frames = list(reader)
    assert 1 <= len(frames) < len(full)
    assert reader.truncated
    with pytest.warns(TruncatedVideoWarning, match="truncated"):
        assert len(list(read_frames(cut))) == len(frames)
    for frame, (time, image) in zip(frames, full, strict=False):
        assert frame.time == pytest.approx(time)
        np.testing.assert_array_equal(frame.image, image)


def test_truncated_mp4_with_index_first_is_reported(tmp_path):
    source = shared_path("media", "vox_talking.mp4")
    remuxed = remux(source, tmp_path / "faststart.mp4", options={"movflags": "faststart"})
    clip = cut(remuxed, 0.6)
    with VideoReader(clip) as reader:
        frames = list(reader)
    assert 10 < len(frames) < 118
    assert reader.truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(read_frames(clip))
    assert any(issubclass(w.category, TruncatedVideoWarning) for w in caught)
    # A cut file whose index (moov) sits at the end cannot be opened at all.
    tail_index = tmp_path / "cut_tail_index.mp4"
    tail_index.write_bytes(source.read_bytes()[: int(source.stat().st_size * 0.6)])
    with pytest.raises(UserError, match="not a readable video"):
        VideoReader(tail_index)


# Remuxes of vox_talking.mp4 (118 frames, 25 fps, 4.72 s): (file name, remux options).
CONTAINERS = {
    "mkv": ("vox.mkv", {}),
    "ts": ("vox.ts", {}),
    "avi": ("vox.avi", {"time_base": Fraction(1, 25)}),
    "mp4": ("vox.mp4", {"options": {"movflags": "faststart"}}),
}


@pytest.mark.parametrize("container", list(CONTAINERS))
def test_a_container_cut_at_two_thirds_is_reported_and_its_complete_file_is_not(
        tmp_path, container):
    name, options = CONTAINERS[container]
    full = remux(shared_path("media", "vox_talking.mp4"), tmp_path / name, **options)
    complete, truncated = read_all(full)
    assert len(complete) == 118 and truncated is None
    frames, truncated = read_all(cut(full, 2 / 3))
    assert 60 < len(frames) < 118
    assert truncated and "\n" not in truncated
    times = {f.index: f.time for f in complete}
    # frames drained from the decoder after the break keep their own time
    assert [f.time for f in frames] == pytest.approx([times[f.index] for f in frames])


@pytest.mark.parametrize("tag", [b"DURATION", b"DURATIOX"])
def test_mkv_cut_between_frames_is_reported_by_its_declared_duration(tmp_path, tag):
    """By the track's DURATION tag, or without one (renamed here), by the segment's
    duration: the video is the file's only stream."""
    full = remux(shared_path("media", "vox_talking.mp4"), tmp_path / "vox.mkv")
    full.write_bytes(full.read_bytes().replace(b"DURATION", tag))
    with av.open(str(full)) as container:
        assert ("DURATION" in container.streams.video[0].metadata) == (tag == b"DURATION")
    frames, truncated = read_all(cut(full, 2 / 3))
    assert truncated == (f"the stream ends at {frames[-1].time + 0.04:.2f} s of the 4.72 s "
                         "its header declares")


def test_ts_cut_just_after_a_whole_frame_is_reported_by_its_partial_packet(tmp_path):
    full = remux(shared_path("media", "vox_talking.mp4"), tmp_path / "vox.ts")
    data = full.read_bytes()
    with av.open(str(full)) as container:
        pid = container.streams.video[0].id
    # the first 188-byte packet past 2/3 that starts a video PES (payload_unit_start set):
    # every frame before it is whole, so the decoder meets no error
    start = next(i for i in range(len(data) * 2 // 3 // 188 * 188, len(data), 188)
                 if data[i + 1] & 0x40 and ((data[i + 1] & 0x1F) << 8 | data[i + 2]) == pid)
    path = tmp_path / "cut.ts"
    path.write_bytes(data[: start + 100])
    frames, truncated = read_all(path)
    assert 60 < len(frames) < 118
    assert truncated == "the file ends inside an MPEG-TS packet (cut off)"


@pytest.mark.parametrize("name, options", [
    ("edit_list.mp4", {"shift": 5120}),  # the edit list hides the first 10 frames
    ("negative_pts.mkv", {"shift": 5120, "options": {"avoid_negative_ts": "disabled"}}),
    ("offset.mp4", {"shift": -1024, "options": {"use_editlist": "0"}}),  # starts at 0.08 s
    ("fine_time_base.avi", {}),  # 1/600 s ticks: 2832 'frames' declared for 118 frames
])
def test_start_offsets_edit_lists_and_time_bases_are_not_truncation(tmp_path, name, options):
    path = remux(shared_path("media", "vox_talking.mp4"), tmp_path / name, **options)
    frames, truncated = read_all(path)
    assert len(frames) >= 108 and truncated is None


@pytest.mark.parametrize("name, codec", [("long_audio.mkv", "mpeg4"), ("long_audio.wmv", "wmv2")])
def test_audio_that_outlasts_the_video_is_not_truncation(tmp_path, name, codec):
    path = tmp_path / name  # 2 s of video, 5 s of audio: the file's duration is 5 s
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        for i in range(50):
            out.mux(video.encode(av.VideoFrame.from_ndarray(pattern(48, 64, seed=i),
                                                            format="rgb24")))
        out.mux(video.encode())
        for i in range(50):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 800
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    frames, truncated = read_all(path)
    assert len(frames) == 50 and truncated is None


@pytest.mark.parametrize("name", ["phone_cut_vfr.mov", "webcam_lamp.wmv", "sample_disfa.avi",
                                  "vox_talking.mp4"])
def test_complete_real_recordings_are_not_truncated(name):
    frames, truncated = read_all(shared_path("media", name))
    assert frames and truncated is None


def test_special_files_are_refused_at_once_without_being_opened(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # opening it would block until a writer comes
    expected = {fifo: "is a FIFO (named pipe), not a regular video file",
                Path("/dev/zero"): "is a device, not a regular video file",
                Path("/dev/urandom"): "is a device, not a regular video file"}
    for path, reason in expected.items():
        began = monotonic()
        with pytest.raises(UserError) as error:
            VideoReader(path)
        assert str(error.value) == f"{path}: {reason}"
        assert monotonic() - began < 1


def test_unreadable_inputs_raise_one_user_error(tmp_path):
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(40_000))
    (tmp_path / "notes.avi").write_text("not a video\n" * 200)
    with av.open(str(tmp_path / "audio.wav"), "w") as out:  # a real file with no video stream
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    expected = {"zero.mp4": "empty", "garbage.mp4": "not a readable video",
                "notes.avi": "not a readable video", "audio.wav": "no video stream",
                "missing.mp4": "no such file"}
    for name, reason in expected.items():
        with pytest.raises(UserError, match=reason) as error:
            VideoReader(tmp_path / name)
        assert name in str(error.value) and "\n" not in str(error.value)


def test_stopping_early_releases_the_decode_thread():
    path = shared_path("media", "vox_talking.mp4")
    reader = VideoReader(path, queue_size=2)
    for frame in reader:
        if frame.index == 3:
            break
    reader.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("decode:")]
