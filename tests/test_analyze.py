"""`fgnet-video analyze` end to end: real media, schema, overlay, batch, resume, bad input."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fgnet_video.analysis.recording import analyze_video
from fgnet_video.analysis.stream import ROW_COLUMNS
from fgnet_video.cli import main

from .conftest import REPO, shared_path
from .test_video import write_video

SAMPLE = REPO / "sample_videos" / "astronaut.mp4"
BP4D_COLUMNS = [f"AU{au:02d}{suffix}" for au in (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
                for suffix in ("_score", "")]


def run(*args: str):
    return CliRunner().invoke(main, ["analyze", *args])


def stream_times(path) -> list[float]:
    with av.open(str(path)) as container:
        return sorted(float(f.pts * f.time_base) for f in container.decode(video=0))


def test_vox_clip_every_frame_one_face(tiny_weights, tmp_path):
    video = shared_path("media", "vox_talking.mp4")
    out = tmp_path / "vox.csv"
    result = run(str(video), "-w", str(tiny_weights), "-o", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table.columns.tolist() == ROW_COLUMNS + BP4D_COLUMNS
    assert table["frame"].tolist() == list(range(118))
    np.testing.assert_allclose(table["timestamp"], stream_times(video), atol=1e-6)
    assert (table["success"] == 1).all() and set(table["face_id"]) == {0}
    scores = table[[c for c in BP4D_COLUMNS if c.endswith("_score")]].to_numpy()
    assert np.abs(scores).max() <= 1
    np.testing.assert_array_equal(table[[c for c in BP4D_COLUMNS if "_" not in c]].to_numpy(),
                                  (scores > 0).astype(int))

    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["finished"] is True and sidecar["truncated"] is None
    assert sidecar["video"]["codec"] == "h264" and sidecar["video"]["frames"] == 118
    assert sidecar["checkpoint"]["aus"] == [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]
    assert len(sidecar["checkpoint"]["sha256"]) == 64
    assert sidecar["stats"]["frames"] == 118 and sidecar["stats"]["faces"] == 118
    assert {"faces", "model", "output"} <= set(sidecar["stats"]["stages"])


def test_disfa_clip_keeps_one_id_for_the_full_face(tiny_weights, tmp_path):
    out = tmp_path / "disfa.csv"
    result = run(str(shared_path("media", "sample_disfa.avi")), "-w", str(tiny_weights),
                 "-o", str(out), "--max-faces", "2")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert sorted(set(table["frame"])) == list(range(20))
    largest = table.loc[table.groupby("frame")["w"].idxmax()]
    assert largest["face_id"].nunique() == 1 and (largest["success"] == 1).all()


def test_sampling_and_the_python_api(tiny_weights):
    video = shared_path("media", "vox_talking.mp4")
    table = analyze_video(video, weights=str(tiny_weights), fps=5, start=1.0, end=3.0)
    assert table.columns.tolist() == ROW_COLUMNS + BP4D_COLUMNS
    assert table["timestamp"].tolist() == pytest.approx([1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4,
                                                        2.6, 2.8])
    assert table["frame"].tolist() == list(range(25, 75, 5))


def test_no_face_frames_are_rows_with_success_0(tiny_weights, tmp_path):
    frames = [np.full((240, 320, 3), 30 + 10 * i, np.uint8) for i in range(6)]
    video = write_video(tmp_path / "empty.mp4", frames)
    out = tmp_path / "empty.csv"
    result = run(str(video), "-w", str(tiny_weights), "-o", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 6 and (table["success"] == 0).all()
    assert table[["face_id", "confidence", "x"] + BP4D_COLUMNS].isna().all().all()


def test_two_faces_get_two_stable_ids(tiny_weights, tmp_path):
    with av.open(str(shared_path("media", "vox_talking.mp4"))) as container:
        faces = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][:10]
    frames = []
    for i, face in enumerate(faces):
        canvas = np.full((256, 640, 3), 40, np.uint8)
        canvas[:, :256], canvas[:, 330 + 2 * i:586 + 2 * i] = face, faces[-1 - i]
        frames.append(canvas)
    video = write_video(tmp_path / "two.mp4", frames)
    table = analyze_video(video, weights=str(tiny_weights))
    assert len(table) == 20 and (table["success"] == 1).all()
    assert table.groupby("frame")["face_id"].apply(sorted).tolist() == [[0, 1]] * 10
    left = table[table["x"] < 300]["face_id"]
    assert left.nunique() == 1


@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 100])
def test_garbage_and_empty_files_fail_in_one_line(tiny_weights, tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    out = tmp_path / "bad.csv"
    result = run(str(bad), "-w", str(tiny_weights), "-o", str(out))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fgnet-video: error: {bad}"), result.output
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_truncated_stream_keeps_the_decodable_frames(tiny_weights, tmp_path):
    data = shared_path("media", "sample_disfa.avi").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "cut.csv"
    result = run(str(cut), "-w", str(tiny_weights), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"warning: {cut}: truncated video" in result.output
    table = pd.read_csv(out)
    assert 1 <= table["frame"].nunique() < 20
    assert json.loads(out.with_suffix(".json").read_text())["truncated"]


def test_overlay_has_every_frame_and_the_audio(tiny_weights, tmp_path):
    out, overlay = tmp_path / "astro.csv", tmp_path / "astro_overlay.mp4"
    result = run(str(SAMPLE), "-w", str(tiny_weights), "-o", str(out), "--overlay", str(overlay),
                 "--end", "2.0")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 50
    with av.open(str(overlay)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio, "the source's audio is copied through"
        times = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert len(times) == 50
    np.testing.assert_allclose(times, np.arange(50) / 25, atol=1e-3)


def test_batch_mixes_good_and_bad_inputs_and_resumes(tiny_weights, tmp_path, monkeypatch):
    videos = tmp_path / "study"
    videos.mkdir()
    frames = [np.full((120, 160, 3), 50, np.uint8)] * 3
    write_video(videos / "a.mp4", frames)
    write_video(videos / "b.mp4", frames)
    (videos / "broken.mp4").write_bytes(b"not a video")
    out_dir = tmp_path / "results"
    args = [str(videos), "-w", str(tiny_weights), "--out-dir", str(out_dir)]

    import fgnet_video.analysis.recording as analyze_module

    original, calls = analyze_module.rows_for, []

    def interrupted(*a, **k):  # the run is killed while writing b.mp4's rows
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(analyze_module, "rows_for", interrupted)
    result = run(*args)
    assert result.exit_code == 130, result.output
    assert (out_dir / "a.json").exists() and not (out_dir / "b.csv").exists()
    assert not (out_dir / "b.json").exists() and not list(out_dir.glob(".*"))

    monkeypatch.setattr(analyze_module, "rows_for", original)
    a_written = (out_dir / "a.csv").stat().st_mtime_ns
    result = run(*args)
    assert result.exit_code == 1  # broken.mp4 failed
    assert "skipped" in result.output and "1 done, 1 skipped, 1 failed" in result.output
    assert f"failed: {videos / 'broken.mp4'}: not a readable video" in result.output
    assert (out_dir / "a.csv").stat().st_mtime_ns == a_written
    assert len(pd.read_csv(out_dir / "b.csv")) == 3 and (out_dir / "b.json").exists()

    result = run(*args, "--overwrite")
    assert "2 done, 0 skipped, 1 failed" in result.output


def test_manifest_and_option_errors(tiny_weights, tmp_path):
    frames = [np.full((120, 160, 3), 50, np.uint8)] * 2
    write_video(tmp_path / "x.mp4", frames)
    manifest = tmp_path / "study.csv"
    manifest.write_text("path,name\nx.mp4,participant01\n")
    result = run(str(manifest), "-w", str(tiny_weights), "--out-dir", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "participant01.csv").exists()
    result = run(str(tmp_path / "x.mp4"), "-w", str(tiny_weights))
    assert result.exit_code == 1 and "-o FILE" in result.output
    result = run(str(tmp_path / "x.mp4"), "-w", str(tiny_weights), "-o", "a.csv",
                 "--start", "3", "--end", "1")
    assert result.exit_code == 1 and "--end" in result.output


@pytest.mark.slow
def test_full_size_reference_checkpoint_on_sampled_frames(reference_converted, tmp_path):
    video = shared_path("media", "vox_talking.mp4")
    out = tmp_path / "full.csv"
    result = run(str(video), "-w", str(reference_converted), "-o", str(out), "--fps", "1",
                 "--end", "2.0", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["frame"].tolist() == [0, 25] and (table["success"] == 1).all()
    scores = table[[c for c in BP4D_COLUMNS if c.endswith("_score")]].to_numpy()
    assert np.isfinite(scores).all() and np.abs(scores).max() <= 1 and scores.std() > 0


def test_parallel_jobs_give_the_same_tables(tiny_weights, tmp_path):
    frames = [np.full((120, 160, 3), 50 + 20 * i, np.uint8) for i in range(3)]
    (tmp_path / "in").mkdir()
    for name in ("p", "q"):
        write_video(tmp_path / "in" / f"{name}.mp4", frames)
    serial = run(str(tmp_path / "in"), "-w", str(tiny_weights), "--out-dir", str(tmp_path / "s"))
    parallel = run(str(tmp_path / "in"), "-w", str(tiny_weights), "--out-dir",
                   str(tmp_path / "j"), "--jobs", "2")
    assert serial.exit_code == 0 and parallel.exit_code == 0, parallel.output
    assert "2 done, 0 skipped, 0 failed" in parallel.output
    for name in ("p", "q"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s" / f"{name}.csv"),
                                      pd.read_csv(tmp_path / "j" / f"{name}.csv"))


def test_min_confidence_drops_weak_detections(tiny_weights, tmp_path):
    with av.open(str(SAMPLE)) as container:
        frames = [cv2.resize(f.to_ndarray(format="rgb24"), (1280, 720))
                  for _, f in zip(range(12), container.decode(video=0), strict=False)]
    video = write_video(tmp_path / "astro720.mp4", frames)
    strict = analyze_video(video, weights=str(tiny_weights), min_confidence=0.5)
    assert (strict["confidence"] >= 0.5).all() and set(strict["face_id"]) == {0}
    assert len(strict) == 12


def test_a_batch_that_stops_filling_goes_out_when_faces_stop_coming():
    """Frames wait for a batch of faces (rows stay in order); when frames without a face
    keep coming, what waits is scored (if it holds faces) and goes out once a frame without
    a face comes FACELESS_WAIT_S after the last face, or after the first frame waiting when
    none holds a face: a stretch without faces is written as it goes, not 64 frames at a
    time."""
    from types import SimpleNamespace

    from fgnet_video.analysis.stream import FACELESS_WAIT_S, FrameBatcher, StageTimes
    from fgnet_video.inference.engine import Prediction
    from fgnet_video.media.video import Frame

    calls: list[int] = []

    class Engine:
        aus, batch_size = (1, 2), 2

        def predict(self, images):
            calls.append(len(images))
            return Prediction(np.zeros((len(images), 2)))

    now = [0.0]
    batcher = FrameBatcher(Engine(), StageTimes(), clock=lambda: now[0])
    frame = [Frame(k, k / 25, np.zeros((4, 4, 3), np.uint8)) for k in range(10)]
    face = SimpleNamespace(aligned=np.zeros((4, 4, 3), np.uint8))

    def indices(scored):
        return [s.frame.index for s in scored]

    assert batcher.add(frame[0], []) == []
    now[0] = FACELESS_WAIT_S / 2
    assert batcher.add(frame[1], []) == []
    now[0] = FACELESS_WAIT_S
    assert indices(batcher.add(frame[2], [])) == [0, 1, 2] and calls == []  # no model
    assert batcher.add(frame[3], [face]) == []
    assert indices(batcher.add(frame[4], [face])) == [3, 4] and calls == [2]  # a batch
    now[0] = 10.0
    assert batcher.add(frame[5], [face]) == []
    now[0] = 10.0 + FACELESS_WAIT_S / 2
    assert batcher.add(frame[6], []) == []  # faces may still come
    now[0] = 10.0 + FACELESS_WAIT_S
    assert indices(batcher.add(frame[7], [])) == [5, 6, 7] and calls == [2, 1]
    assert batcher.add(frame[8], []) == []  # the clock starts again at the first waiting
    now[0] = 10.0 + 2 * FACELESS_WAIT_S
    assert indices(batcher.add(frame[9], [])) == [8, 9] and calls == [2, 1]
