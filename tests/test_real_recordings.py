"""Real recordings: the table never depends on the overlay, and media facts are
reported as they are."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.cli import main

from .conftest import shared_path

SHORT = ["--end", "0.4"]  # 10 frames of the vox clip


def analyze(*args: str):
    return CliRunner().invoke(main, ["analyze", *args])


@pytest.fixture
def broken_overlay_encoder(monkeypatch):
    """Every overlay frame fails to encode, as the encoder does on timestamps it refuses."""
    from fgnet_video.analysis import overlay
    from fgnet_video.errors import UserError

    def refuse(self, scored):
        raise UserError(f"{self.target}: the overlay could not be encoded (Invalid argument)")

    monkeypatch.setattr(overlay.OverlayWriter, "write", refuse)


def test_a_failing_overlay_leaves_the_table_and_a_sidecar_that_says_so(
        tiny_weights, tmp_path, broken_overlay_encoder):
    clip = shared_path("media", "vox_talking.mp4")
    table = tmp_path / "vox.csv"
    result = analyze(str(clip), "-o", str(table), "--overlay", "-w", str(tiny_weights), *SHORT)
    assert result.exit_code == 0, result.output
    assert "the overlay failed" in result.output and "Invalid argument" in result.output
    final = result.output.strip().splitlines()[-1]  # names only the files that exist
    assert final.endswith(f"-> {table}, {tmp_path / 'vox.json'}"), final
    assert len(pd.read_csv(table)) == 10
    sidecar = json.loads((tmp_path / "vox.json").read_text())
    assert sidecar["finished"] is True
    overlay = sidecar["outputs"]["overlay"]
    assert set(overlay) == {"name", "failed"} and overlay["name"] == "vox.overlay.mp4"
    assert "could not be encoded (Invalid argument)" in overlay["failed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vox.csv", "vox.json"]  # no partial
    again = analyze(str(clip), "-o", str(table), "--overlay", "-w", str(tiny_weights), *SHORT)
    assert again.exit_code == 0 and "skipped" in again.output  # complete: not retried


def test_a_failing_overlay_on_overwrite_removes_the_previous_runs_overlay(
        tiny_weights, tmp_path, monkeypatch):
    clip = shared_path("media", "vox_talking.mp4")
    table = tmp_path / "vox.csv"
    first = analyze(str(clip), "-o", str(table), "--overlay", "-w", str(tiny_weights), *SHORT)
    assert first.exit_code == 0 and (tmp_path / "vox.overlay.mp4").is_file()
    from fgnet_video.analysis import overlay
    def refuse(self, scored):
        raise RuntimeError("encoder gone")

    monkeypatch.setattr(overlay.OverlayWriter, "write", refuse)
    again = analyze(str(clip), "-o", str(table), "--overlay", "-w", str(tiny_weights),
                    "--overwrite", "--end", "0.2")
    assert again.exit_code == 0, again.output
    assert not (tmp_path / "vox.overlay.mp4").exists()  # no overlay of another run beside it
    assert len(pd.read_csv(table)) == 5
    sidecar = json.loads((tmp_path / "vox.json").read_text())
    assert "encoder gone" in sidecar["outputs"]["overlay"]["failed"]


@pytest.mark.parametrize("name", ["webcam_lamp.wmv", "phone_cut_vfr.mov"])
def test_both_shared_problem_clips_give_table_sidecar_and_overlay(name, tiny_weights,
                                                                   tmp_path):
    clip = shared_path("media", name)
    result = analyze(str(clip), "--out-dir", str(tmp_path), "--overlay", "-w",
                     str(tiny_weights), "--end", "3")
    assert result.exit_code == 0, result.output
    stem = Path(name).stem
    sidecar = json.loads((tmp_path / f"{stem}.json").read_text())
    assert sidecar["outputs"]["overlay"]["name"] == f"{stem}.overlay.mp4"
    assert "failed" not in sidecar["outputs"]["overlay"]
    assert (tmp_path / f"{stem}.overlay.mp4").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / f"{stem}.csv")) > 0


@pytest.mark.parametrize("name, measured, variable", [
    ("phone_cut_vfr.mov", 26.41, True),   # 30 fps, then 24 fps
    ("vox_talking.mp4", 25.0, False),
])
def test_the_sidecar_records_the_frame_rate_the_timestamps_show(name, measured, variable,
                                                                 tiny_weights, tmp_path):
    result = analyze(str(shared_path("media", name)), "--out-dir", str(tmp_path), "-w",
                     str(tiny_weights), "--fps", "5")  # sampling does not change what is read
    assert result.exit_code == 0, result.output
    video = json.loads((tmp_path / f"{Path(name).stem}.json").read_text())["video"]
    assert video["fps_measured"] == pytest.approx(measured, abs=0.01)
    assert video["variable_frame_rate"] is variable
    assert video["frame_interval_min"] <= 1 / measured <= video["frame_interval_max"]


# -- faces a person sees: small and secondary faces ---------------------------------------------

def test_detection_passes_find_small_faces_in_an_upscaled_second_pass():
    from fgnet_video.face.detect import DetectionPass, detection_passes

    assert detection_passes(40) == [DetectionPass(1.0, 80.0),
                                    DetectionPass(2.0, 40.0, 80.0, 0.5)]
    assert detection_passes(80) == [DetectionPass(1.0, 80.0)]
    assert detection_passes(160) == [DetectionPass(0.5, 160.0)]
    assert detection_passes(40, downscale=0.5) == [DetectionPass(0.5, 40.0)]


@pytest.fixture(scope="module")
def three_people(tmp_path_factory) -> Path:
    """12 frames of 640x480: the vox face three times, at about 95, 65 and 50 px."""
    import av
    import cv2
    import numpy as np

    from fgnet_video.media.video import read_frames

    frames = [f.image for f in read_frames(shared_path("media", "vox_talking.mp4"), end=0.48)]
    path = tmp_path_factory.mktemp("three") / "three_people.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for image in frames:
            canvas = np.full((480, 640, 3), 100, np.uint8)
            for side, x in ((130, 20), (90, 260), (68, 480)):  # crops; faces ~0.73 of them
                canvas[150:150 + side, x:x + side] = cv2.resize(image, (side, side),
                                                                interpolation=cv2.INTER_AREA)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode())
    return path


def test_secondary_small_faces_are_found_tracked_once_and_flagged(three_people, tiny_weights,
                                                                  tmp_path):
    table_path = tmp_path / "three.csv"
    result = analyze(str(three_people), "-o", str(table_path), "-w", str(tiny_weights))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(table_path)
    assert (table.groupby("frame").size() == 3).all()  # every face in every frame
    assert table.face_id.nunique() == 3  # one track each
    assert (table.small_face == (table[["w", "h"]].min(axis=1) < 80).astype(int)).all()
    flags = table.groupby("face_id").small_face.agg(["min", "max"])
    assert (flags["min"] == 1).any() and (flags["max"] == 0).any()  # small and large faces
    before = analyze(str(three_people), "-o", str(tmp_path / "big.csv"), "-w",
                     str(tiny_weights), "--min-face", "80")
    # without the small-face pass, a face found only by it is missed
    assert before.exit_code == 0 and pd.read_csv(tmp_path / "big.csv").face_id.nunique() < 3


def test_the_overlay_keeps_the_sound_before_the_first_frame(tiny_weights, tmp_path):
    """Audio from 0 s, video from 0.5 s (as a camera that starts recording sound first): the
    overlay keeps both where the source has them."""
    import av
    import numpy as np

    from fgnet_video.media.video import read_frames

    faces = [f.image for f in read_frames(shared_path("media", "vox_talking.mp4"), end=0.4)]
    source = tmp_path / "late_video.mp4"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 256, 256, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        tone = (0.2 * np.sin(np.arange(16000 * 1.0) * 2 * np.pi * 440 / 16000)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        for i, image in enumerate(faces):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = 500 + 40 * i  # ms
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    result = analyze(str(source), "-o", str(tmp_path / "late.csv"), "--overlay", "-w",
                     str(tiny_weights))
    assert result.exit_code == 0, result.output
    overlay = tmp_path / "late.overlay.mp4"
    with av.open(str(overlay)) as container:
        first_audio = next(iter(container.decode(audio=0))).time
    with av.open(str(overlay)) as container:
        first_video = next(iter(container.decode(video=0))).time
    assert first_audio < 0.1 and first_video == pytest.approx(0.5, abs=1e-3)
    assert pd.read_csv(tmp_path / "late.csv").timestamp.iloc[0] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("clip, end", [("webcam_lamp.wmv", "2"), ("sample_disfa.avi", None),
                                       ("phone_cut_vfr.mov", "3")])
def test_the_cnn_loses_no_face_that_hog_finds(clip, end, tiny_weights, tmp_path):
    """`auto` (the CNN) finds, in every frame, at least the faces HOG finds there (a lamp
    sweeping light, a lab recording with half a face at the edge, a phone clip)."""
    counts = {}
    for detector in ("hog", "auto"):
        out = tmp_path / f"{detector}.csv"
        result = analyze(str(shared_path("media", clip)), "-o", str(out), "-w",
                         str(tiny_weights), "--detector", detector,
                         *(["--end", end] if end else []))
        assert result.exit_code == 0, result.output
        table = pd.read_csv(out)
        counts[detector] = table[table.success == 1].groupby("frame").size()
    assert counts["hog"].sum() > 0
    fewer = [f for f, n in counts["hog"].items() if counts["auto"].get(f, 0) < n]
    assert fewer == []
