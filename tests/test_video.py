"""Video decoding: timestamps, sampling, rotation, pixel formats, broken and non-video input."""

from __future__ import annotations

import threading
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fgnet_video.errors import UserError
from fgnet_video.video import (
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
    remuxed = tmp_path / "faststart.mp4"
    with av.open(str(source)) as src, av.open(str(remuxed), "w",
                                              options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = remuxed.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with VideoReader(cut) as reader:
        frames = list(reader)
    assert 10 < len(frames) < 118
    assert reader.truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(read_frames(cut))
    assert any(issubclass(w.category, TruncatedVideoWarning) for w in caught)
    # A cut file whose index (moov) sits at the end cannot be opened at all.
    tail_index = tmp_path / "cut_tail_index.mp4"
    tail_index.write_bytes(source.read_bytes()[: int(source.stat().st_size * 0.6)])
    with pytest.raises(UserError, match="not a readable video"):
        VideoReader(tail_index)


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
