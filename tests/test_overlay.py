"""The overlay: labels and panels drawn inside the frame at any size, and videos whose timing
the encoder must keep (variable frame rate, millisecond timestamps, WMA audio, 1x1 frames)."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.aus import BP4D_AUS
from fgnet_video.cli import main
from fgnet_video.face.pipeline import Face
from fgnet_video.overlay import BOX_COLOURS, draw_faces
from fgnet_video.pipeline import ScoredFrame
from fgnet_video.video import Frame

from .conftest import shared_path
from .test_video import write_video

SIZES = [(256, 256), (1280, 720), (1024, 768)]
GREY = 160  # shaded: 64; the box colours have a channel above 112 (as the text mostly does)


def _face(face_id: int, box: tuple[float, float, float, float]) -> Face:
    points = np.zeros((68, 2))
    return Face(0, 0.0, face_id, box, 1.0, True, points, np.zeros((256, 256, 3), np.uint8),
                np.eye(3), points)


def _draw(width: int, height: int, face: Face, score: float, value: int = GREY) -> np.ndarray:
    image = np.full((height, width, 3), value, np.uint8)
    scores = np.full((1, len(BP4D_AUS)), score)
    return draw_faces(image, ScoredFrame(Frame(0, 0.0, image), [face], scores), BP4D_AUS)


def _tag(canvas: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the shaded area on a grey frame: the id label when no AU
    is active (box lines under the shade count, text pixels inside it do not matter)."""
    rows, cols = np.nonzero((canvas < 112).all(axis=2))
    return rows.min(), cols.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_id_label_of_a_face_at_the_top_edge_is_drawn_whole_inside_the_frame(width, height):
    """The label of a face touching (or cut by) the top edge, also in the corners, is the
    same size as that of a face in the middle: nothing of it is cut off."""
    side = min(width, height) // 3
    middle = _tag(_draw(width, height, _face(1, (width / 2, height / 2, side, side)), -1.0))
    for box in ((width / 3, 0, side, side), (width / 3, -side / 3, side, side),
                (-side / 4, 0, side, side), (width - side / 4, -2, side, side)):
        canvas = _draw(width, height, _face(1, box), -1.0)
        top, left, tag_height, tag_width = _tag(canvas)
        assert (tag_height, tag_width) == middle[2:], box
        assert top > 0 and left >= 0 and left + tag_width <= width, box
        label = canvas[top:top + tag_height, left:left + tag_width].astype(int)
        blue_text = label[..., 2] - label[..., 0] > 40  # id 1 is drawn in blue
        assert blue_text.any(), box


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_score_text_never_meets_its_bar(width, height):
    side = min(width, height) // 3
    x, y = width // 8, height // 4
    canvas = _draw(width, height, _face(0, (x, y, side, side)), 1.0, value=0)
    panel = canvas[y:, x + side + 4:].astype(int)
    green = (panel == BOX_COLOURS[0]).all(axis=2)  # full bars (score 1)
    text = (panel.max(axis=2) > 60) & (np.ptp(panel, axis=2) < 8)  # white text, anti-aliased
    bar_rows = np.nonzero(green.any(axis=1))[0]
    assert len(bar_rows) > len(BP4D_AUS)  # every AU has its bar
    first_bar_column = np.nonzero(green.any(axis=0))[0].min()
    assert np.nonzero(text.any(axis=0))[0].max() < first_bar_column - 1


def test_sizes_scale_with_the_frame():
    heights = [_tag(_draw(w, h, _face(0, (w / 2, h / 2, 40, 40)), -1.0))[2] for w, h in SIZES]
    assert heights[0] < heights[2] and heights[0] < heights[1]


# -- timing ------------------------------------------------------------------------------------

def _video_times(path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.pts * frame.time_base) for frame in container.decode(video=0)]


@pytest.mark.parametrize(("clip", "options"), [
    ("phone_cut_vfr.mov", ["--end", "3.5"]),  # 30 fps, then 24 fps; audio from 2.43 s
    ("webcam_lamp.wmv", []),  # millisecond timestamps, WMA audio that MP4 cannot hold
])
def test_overlay_keeps_the_source_timing_and_audio(clip, options, tiny_weights, tmp_path):
    video = shared_path("media", clip)
    table, overlay = tmp_path / "aus.csv", tmp_path / "overlay.mp4"
    result = CliRunner().invoke(main, ["analyze", str(video), "-w", str(tiny_weights), "-o",
                                       str(table), "--overlay", str(overlay), *options])
    assert result.exit_code == 0, result.output
    frames = pd.read_csv(table).drop_duplicates("frame")
    times = _video_times(overlay)
    assert len(times) == len(frames) > 50
    np.testing.assert_allclose(times, frames["timestamp"], atol=1e-3)
    source = _video_times(video)[:len(times)]
    np.testing.assert_allclose(times, source, atol=1e-3)
    with av.open(str(overlay)) as container, av.open(str(video)) as original:
        # some frames are closer together than the average rate says (what broke encoders)
        assert np.diff(times).min() < 1 / original.streams.video[0].average_rate
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0


def test_a_1x1_video_gets_an_overlay(tiny_weights, tmp_path):
    video = write_video(tmp_path / "dot.mkv", [np.full((1, 1, 3), 90, np.uint8)] * 4,
                        codec="ffv1", pix_fmt="yuv444p", rate=10)
    overlay = tmp_path / "dot.overlay.mp4"
    result = CliRunner().invoke(main, ["analyze", str(video), "-w", str(tiny_weights), "-o",
                                       str(tmp_path / "dot.csv"), "--overlay", str(overlay)])
    assert result.exit_code == 0, result.output
    with av.open(str(overlay)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (2, 2)
    np.testing.assert_allclose([float(f.time) for f in frames], [0.0, 0.1, 0.2, 0.3], atol=1e-3)
