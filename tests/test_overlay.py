"""The overlay: labels and panels drawn inside the frame at any size, and videos whose timing
the encoder must keep (variable frame rate, millisecond timestamps, WMA audio, 1x1 frames)."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.analysis.overlay import OverlayWriter
from fgnet_video.analysis.overlay_draw import (
    BOX_COLOURS,
    RecentFaces,
    draw_faces,
    place_panels,
)
from fgnet_video.analysis.stream import ScoredFrame
from fgnet_video.aus import BP4D_AUS
from fgnet_video.cli import main
from fgnet_video.face.pipeline import Face
from fgnet_video.media.video import Frame

from .conftest import shared_path
from .test_video import write_video

SIZES = [(256, 256), (1280, 720), (1024, 768), (320, 240)]
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


# -- placement: panels, tags and the legend cover no face -------------------------------------

# The panel sizes draw_faces asks place_panels for, per size level (largest first), and the
# size of a face's legend entry (sizes are (w, h), boxes (x, y, w, h), in pixels).
PANELS_640x480 = {4: [(156, 80), (118, 72), (78, 55), (67, 46)],
                  12: [(156, 232), (118, 208), (78, 159), (67, 134)]}
PANELS_1280x720 = {4: [(247, 127), (173, 97), (131, 80), (93, 63)],
                   12: [(247, 367), (173, 281), (131, 232), (93, 183)]}
PANELS_256x256 = {4: [(93, 55), (80, 46), (74, 46), (67, 46)],
                  12: [(93, 159), (80, 134), (74, 134), (67, 134)]}
LEGEND = {4: (26, 57), 12: (26, 145)}
CROP = (30, 20, 200, 220)  # a tight face crop: the face fills most of a 256x256 frame
THREE = [(130, 190, 100, 100), (270, 190, 100, 100), (410, 190, 100, 100)]  # 40 px apart


def _layout(frame, boxes, panels, active, gap=4):
    return place_panels(frame, boxes, [[panels[active][level]] * len(boxes)
                                       for level in range(len(panels[active]))],
                        [LEGEND[active]] * len(boxes), gap)


def _overlap(a, b) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def _draw_all(width: int, height: int, boxes, active: int) -> np.ndarray:
    """A grey frame with faces (ids 0, 1, ...) at `boxes`, each with its first `active` AUs
    present (score 1: full bars)."""
    image = np.full((height, width, 3), GREY, np.uint8)
    present = np.where(np.arange(len(BP4D_AUS)) < active, 1.0, -1.0)
    scores = np.tile(present, (len(boxes), 1))
    faces = [_face(i, box) for i, box in enumerate(boxes)]
    return draw_faces(image, ScoredFrame(Frame(0, 0.0, image), faces, scores), BP4D_AUS)


def _shaded(canvas: np.ndarray) -> np.ndarray:
    """Pixels of a grey frame under a tag, panel or legend (the shade and its bars)."""
    return (canvas < 112).all(axis=2)


def _covered(canvas: np.ndarray, box) -> float:
    """The shaded fraction of a face box's inside (its strokes left out)."""
    x, y, w, h = box
    return _shaded(canvas)[y + 3:y + h - 2, x + 3:x + w - 2].mean()


@pytest.mark.parametrize("active", [1, 4, 12])
def test_a_face_filling_a_small_frame_stays_uncovered(active):
    """Beside a tight 256x256 crop only a one-row panel fits (below the box, shrunk); more
    AUs go to the compact legend in a corner. Either covers at most 1 % of the face box (none,
    in fact), and every AU is shown."""
    canvas = _draw_all(256, 256, [CROP], active)
    assert _covered(canvas, CROP) <= 0.01
    x, y, w, h = CROP
    outside = _shaded(canvas)
    outside[y - 1:y + h + 2, x - 1:x + w + 2] = False
    assert outside.sum() >= 250 * active  # a legend line is 26 x 11 px, a panel row larger
    if active in LEGEND:
        layout = _layout((256, 256), [CROP], PANELS_256x256, active, gap=3)
        assert layout.panels == (None,) and layout.in_legend == (0,)
        assert _overlap(layout.legend, CROP) <= 0.01 * CROP[2] * CROP[3]


@pytest.mark.parametrize("active", [4, 12])
def test_three_faces_side_by_side_get_panels_covering_no_face_and_no_panel(active):
    layout = _layout((640, 480), THREE, PANELS_640x480, active)
    assert layout.legend is None and None not in layout.panels
    for index, panel in enumerate(layout.panels):
        assert not any(_overlap(panel, box) for box in THREE), panel
        assert not any(_overlap(panel, other) for other in layout.panels[index + 1:]), panel
    canvas = _draw_all(640, 480, THREE, active)
    assert [_covered(canvas, box) for box in THREE] == [0, 0, 0]
    assert _shaded(canvas).sum() > 3 * active * 100  # the panels are there


@pytest.mark.parametrize("active", [4, 12])
def test_a_face_at_the_right_edge_gets_its_panel_on_the_left(active):
    box = (1100, 200, 170, 220)
    (panel,) = _layout((1280, 720), [box], PANELS_1280x720, active).panels
    assert panel[0] + panel[2] <= box[0] and _overlap(panel, box) == 0
    canvas = _draw_all(1280, 720, [box], active)
    columns = np.nonzero(_shaded(canvas)[box[1] + 3:box[1] + box[3]])[1]
    assert len(columns) and columns.max() < box[0] - 1


def test_an_id_label_avoids_the_face_above_it():
    """Above its box the tag would cover the chin of the face above: it goes below."""
    upper, lower = (200, 100, 120, 120), (200, 230, 120, 120)
    canvas = _draw_all(640, 480, [upper, lower], 0)
    assert _covered(canvas, upper) == 0 and _covered(canvas, lower) == 0
    assert _shaded(canvas)[lower[1] + lower[3] + 2:].any()  # the tag of face 1, below it


def _scored(time: float, boxes: dict[int, tuple], active: int = 4,
            size=(640, 480)) -> ScoredFrame:
    """A grey frame at `time` with the faces {face id: box}, each with `active` AUs."""
    image = np.full((size[1], size[0], 3), GREY, np.uint8)
    present = np.where(np.arange(len(BP4D_AUS)) < active, 1.0, -1.0)
    faces = [_face(face_id, box) for face_id, box in boxes.items()]
    return ScoredFrame(Frame(0, time, image), faces, np.tile(present, (len(faces), 1)))


def test_a_face_seen_a_moment_ago_without_a_box_now_is_kept_clear():
    """Three faces side by side; the middle one loses its box (missed, turned away). Its
    neighbour's panel, which goes right of its box when nothing is there, would cover it;
    with its last box kept clear (RecentFaces) no tag or panel covers it."""
    scored = _scored(0.5, {0: THREE[0], 2: THREE[2]})
    assert _covered(draw_faces(scored.frame.image, scored, BP4D_AUS), THREE[1]) > 0.3
    recent = RecentFaces()
    assert recent.unboxed(_scored(0.0, dict(enumerate(THREE)))) == []
    keep_clear = recent.unboxed(scored)
    assert keep_clear == [THREE[1]]
    canvas = draw_faces(scored.frame.image, scored, BP4D_AUS, keep_clear=keep_clear)
    assert [_covered(canvas, box) for box in THREE] == [0, 0, 0]
    assert _shaded(canvas).sum() > 2 * 4 * 100  # both panels are there
    # a second later the place is free again; a face back in the frame is boxed, not kept
    assert recent.unboxed(_scored(1.6, {0: THREE[0], 2: THREE[2]})) == []
    assert recent.unboxed(_scored(1.7, {0: THREE[0], 1: THREE[1]})) == [THREE[2]]


def test_the_overlay_video_keeps_the_place_of_a_face_without_a_box_clear(tmp_path):
    source = write_video(tmp_path / "grey.mp4", [np.full((480, 640, 3), GREY, np.uint8)] * 2)
    writer = OverlayWriter(source, tmp_path / "overlay.mp4", BP4D_AUS)
    writer.write(_scored(0.0, dict(enumerate(THREE))))
    writer.write(_scored(0.04, {0: THREE[0], 2: THREE[2]}))
    writer.finish()
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        last = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][-1]
    x, y, w, h = THREE[1]
    assert np.abs(last[y + 3:y + h - 2, x + 3:x + w - 2].astype(int) - GREY).max() < 24


@pytest.mark.parametrize(("width", "height"), [(320, 240), (256, 256), (33, 17), (2, 2),
                                               (1, 1)])
def test_panels_and_legend_lie_inside_the_frame(width, height):
    rng = np.random.default_rng(width * height)
    for _ in range(200):
        n = int(rng.integers(1, 5))
        xy = rng.integers(-40, max(width, height), (n, 2))
        wh = rng.integers(1, 160, (n, 2))
        boxes = [tuple(map(int, (*p, *s))) for p, s in zip(xy, wh, strict=True)]
        sizes = [[tuple(map(int, rng.integers(1, 200, 2))) for _ in boxes] for _ in range(3)]
        layout = place_panels((width, height), boxes, sizes, sizes[-1], gap=3)
        for rect in [*layout.panels, layout.legend]:
            if rect is not None:
                x, y, w, h = rect
                assert 0 <= x and x + w <= width and 0 <= y and y + h <= height, rect
        for panel, size in zip(layout.panels, sizes[layout.level], strict=True):
            if panel is not None:  # a panel is whole and free, or in the legend
                assert panel[2:] == size and not any(_overlap(panel, b) for b in boxes)
    canvas = _draw_all(width, height, [(-5, -5, width + 10, height + 10)], len(BP4D_AUS))
    assert canvas.shape == (height, width, 3)


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


def test_labels_name_the_person_as_the_table_does():
    from types import SimpleNamespace

    from fgnet_video.analysis.overlay_draw import face_tag

    def face(person_id, person):
        return SimpleNamespace(face_id=3, person_id=person_id, person=person)

    assert face_tag(face(0, "Ann")) == "Ann, id 3"
    assert face_tag(face(2, None)) == "person 2, id 3"
    assert face_tag(face(None, None)) == "id 3"
