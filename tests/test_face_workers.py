"""`--face-workers N`: the HOG detector runs ahead in worker processes (the CNN's detections
run ahead in batches on the device); the faces, ids and tables are those of one worker, and
no worker outlives its analysis."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
from click.testing import CliRunner

from fgnet_video.cli import main
from fgnet_video.face.parallel import ParallelFacePipeline
from fgnet_video.face.track import FaceTracker
from fgnet_video.media.video import read_frames
from fgnet_video.options import FaceSettings, face_worker_count

from .conftest import same_clip_twice, shared_path
from .test_real_recordings import three_people  # noqa: F401 - the fixture


@pytest.mark.parametrize("clip, end", [
    ("phone_cut_vfr.mov", "4"),    # a face, a cut, then frames without one (detection each)
    ("sample_disfa.avi", None),    # a face and half a face at the edge
])
def test_tables_are_identical_for_one_and_two_face_workers(clip, end, tiny_weights, tmp_path):
    tables = []
    for workers in ("1", "2"):
        out = tmp_path / workers / "t.csv"
        args = [str(shared_path("media", clip)), "-o", str(out), "-w", str(tiny_weights),
                "--face-workers", workers, "--detector", "hog",
                *(["--end", end] if end else [])]
        result = CliRunner().invoke(main, ["analyze", *args])
        assert result.exit_code == 0, result.output
        tables.append(out.read_bytes())
    assert tables[0] == tables[1]


def test_three_people_are_found_alike_by_one_and_three_workers(three_people,  # noqa: F811
                                                               tiny_weights, tmp_path):
    tables = []
    for workers in ("1", "3"):
        out = tmp_path / workers / "t.csv"
        result = CliRunner().invoke(main, ["analyze", str(three_people), "-o", str(out), "-w",
                                           str(tiny_weights), "--face-workers", workers,
                                           "--detect-every", "3", "--detector", "hog"])
        assert result.exit_code == 0, result.output
        tables.append(out.read_bytes())
    assert tables[0] == tables[1]


def test_workers_stop_when_the_stream_is_closed_early():
    frames = read_frames(shared_path("media", "vox_talking.mp4"))
    stream = ParallelFacePipeline(FaceSettings(detector="hog"), 2).stream(frames)
    assert [len(faces) for _, faces in (next(stream) for _ in range(3))] == [1, 1, 1]
    assert multiprocessing.active_children()
    stream.close()
    assert not multiprocessing.active_children()


def test_frames_read_ahead_give_each_worker_keyframes_within_the_memory_cap():
    stage = ParallelFacePipeline(FaceSettings(detector="hog", detect_every=10), 2)
    assert stage.look_ahead(1280 * 720 * 3) == 41  # 2 x 2 workers x 10 + 1 (110 MB)
    assert stage.look_ahead(2560 * 1440 * 3) == 24  # 256 MiB hold 24 frames of 1440p
    assert stage.look_ahead(3840 * 2160 * 3) == 11  # 4K: at least detect_every + 1


class _NoDetector:
    def __call__(self, image, small_faces=True):
        return []


def test_upcoming_detections_follow_the_trackers_schedule():
    tracker = FaceTracker(_NoDetector(), predictor=None, detect_every=4)
    # no face tracked: a detection every frame, the small-face pass every 4th
    assert tracker.upcoming(6) == [(0, True), (1, False), (2, False), (3, False), (4, True),
                                   (5, False)]


def test_auto_face_workers_follow_the_cores():
    assert [face_worker_count("auto", cores) for cores in (1, 2, 8, 16, 64)] == \
        [1, 1, 2, 4, 4]
    assert face_worker_count(3) == 3
    assert [face_worker_count("auto", 16, jobs) for jobs in (1, 2, 4)] == [4, 2, 1]


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_study_with_face_workers_resumes_to_the_same_tables(jobs, tiny_weights,
                                                                          tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO
    from .test_nothing_lost import alive, children, interruptible, study

    inputs = study(tmp_path, shared_path("media", "vox_talking.mp4"), 4)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fgnet_video", "analyze", *inputs, "--out-dir", str(out),
               "-w", str(tiny_weights), "--face-workers", "2", "--jobs", str(jobs),
               "--detector", "hog"]
    log = open(tmp_path / "stderr.txt", "w")
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
                               preexec_fn=interruptible)
    log.close()
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")):  # the first recording is done
        assert process.poll() is None, (tmp_path / "stderr.txt").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    while not children(process.pid):  # face workers (--jobs 1) or recording workers run
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    workers = children(process.pid)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert process.returncode == 130, (tmp_path / "stderr.txt").read_text()
    deadline = time.monotonic() + 15  # workers stop on their own, however loaded the machine
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)
    assert not list(out.glob(".*partial-*"))
    done_before = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    assert 1 <= len(done_before) < 4
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("skipped") >= len(done_before)
    tables = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    assert len(tables) == 4 and all(tables[name] == data for name, data in done_before.items())
    assert len(set(tables.values())) == 1  # four copies of one clip: four equal tables


@pytest.mark.parametrize("workers", [1, 2])
def test_a_study_reuses_one_face_stage_and_gives_the_tables_of_single_runs(
        workers, tiny_weights, tmp_path, monkeypatch):
    import shutil

    from fgnet_video.analysis import recording
    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.study.run import analyze_inputs

    inputs = tmp_path / "in"
    inputs.mkdir()
    for k, name in enumerate(["vox_talking.mp4", "webcam_lamp.wmv", "vox_talking.mp4"]):
        shutil.copy(shared_path("media", name), inputs / f"c{k}{name[-4:]}")
    options = {"weights": str(tiny_weights), "face_workers": workers, "fps": 5}
    singles = {}
    for video in sorted(inputs.iterdir()):
        result = CliRunner().invoke(main, ["analyze", str(video), "-o",
                                           str(tmp_path / "one" / f"{video.stem}.csv"),
                                           "-w", str(tiny_weights), "--face-workers",
                                           str(workers), "--fps", "5"])
        assert result.exit_code == 0, result.output
        singles[video.stem] = (tmp_path / "one" / f"{video.stem}.csv").read_bytes()
    built = []
    original = (ParallelFacePipeline if workers > 1 else recording.FacePipeline).__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ParallelFacePipeline if workers > 1 else recording.FacePipeline,
                        "__init__", counting)
    summary = analyze_inputs([str(inputs)], AnalyzeOptions.from_kwargs(**options),
                             out_dir=tmp_path / "study")
    assert len(summary.done) == 3 and len(built) == 1  # one stage for the three recordings
    for stem, table in singles.items():
        assert (tmp_path / "study" / f"{stem}.csv").read_bytes() == table, stem
    if workers > 1:
        assert built[0]._pool is None  # the detection processes stopped with the study


def test_the_tasks_of_a_ray_worker_process_share_one_face_stage(tiny_weights, tmp_path,
                                                                monkeypatch):
    """Ray runs a study's recordings as tasks in long-lived worker processes: the second
    task of a process resets the first's face stage instead of building one (as a local
    study does), with the tables of single runs."""

    from fgnet_video.analysis import recording
    from fgnet_video.study import ray_cluster

    _, plan = same_clip_twice(tmp_path, tiny_weights, "hog")
    built = []
    original = recording.FacePipeline.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(recording.FacePipeline, "__init__", counting)
    try:
        outcomes = [ray_cluster.run_job(job, plan, str(tmp_path), False) for job in plan.jobs]
    finally:  # this test's thread is not a Ray worker: give its kept stage up
        recording._stages.keep = False
        recording._drop_kept()
    assert [o.status for o in outcomes] == ["done", "done"] and len(built) == 1
    tables = [(tmp_path / "out" / f"c{k}.csv").read_bytes() for k in range(2)]
    assert tables[0] == tables[1]  # the same clip twice: the reset stage gives the same rows


def _faces_as_rows(pairs) -> list[tuple]:
    return [(frame.index, f.face_id, f.person_id, tuple(round(v, 6) for v in f.box),
             round(f.confidence, 6), f.detected) for frame, faces in pairs for f in faces]


def test_cnn_detections_batched_on_the_device_change_no_face():
    """The CNN's detections run ahead in batches (DeviceDetections) give the faces of the
    one-frame-at-a-time pipeline, over a shot cut into frames without a face (where every
    frame is searched)."""
    from fgnet_video.face.pipeline import FacePipeline

    settings = FaceSettings(detector="cnn", min_face_size=80, detect_every=3)
    frames = [f for f in read_frames(shared_path("media", "phone_cut_vfr.mov"), start=2.2,
                                     end=3.0)]
    one_by_one = FacePipeline(settings)
    expected = [(frame, one_by_one.process(frame)) for frame in frames]
    batched = ParallelFacePipeline(settings, 1)
    try:
        assert batched.on_device
        got = list(batched.stream(frames))
    finally:
        batched.close()
    assert any(faces for _, faces in expected) and not all(faces for _, faces in expected)
    assert _faces_as_rows(got) == _faces_as_rows(expected)


def test_device_detections_run_in_batches_and_skip_cancelled_requests():
    import threading

    from fgnet_video.face.device_detections import DeviceDetections

    calls, gate = [], threading.Event()

    class Recorder:
        def detect_many(self, images, small_faces):
            gate.wait(5)
            calls.append((len(images), small_faces))
            return [[int(image[0, 0, 0])] for image in images]

    images = [np.full((4, 4, 3), k, np.uint8) for k in range(6)]
    detections = DeviceDetections(Recorder(), batch=4)
    try:
        first = detections.submit(images[0], True)  # taken alone: the thread waits on it
        time.sleep(0.2)
        rest = [detections.submit(image, False) for image in images[1:]]
        assert rest[1].cancel()
        gate.set()
        assert first.result(5) == [0]
        assert [f.result(5) for i, f in enumerate(rest) if i != 1] == [[1], [3], [4], [5]]
    finally:
        detections.shutdown()
    assert calls == [(1, True), (3, False), (1, False)]


def test_device_detections_stop_without_being_waited_for():
    """shutdown(wait=False), as after a signal: the queue is cancelled, the batch at hand
    finishes in the background and the thread ends after it (also when it was idle)."""
    import threading

    from fgnet_video.face.device_detections import DeviceDetections, busy

    gate = threading.Event()

    class Slow:
        def detect_many(self, images, small_faces):
            gate.wait(5)
            return [[] for _ in images]

    image = np.zeros((4, 4, 3), np.uint8)
    working = DeviceDetections(Slow(), batch=1)
    running = working.submit(image, True)
    time.sleep(0.2)  # the thread has taken it and waits in the detector
    queued = working.submit(image, True)
    assert busy()
    working.shutdown(wait=False)
    assert queued.cancelled() and not running.done()
    gate.set()
    working._thread.join(5)
    assert not working._thread.is_alive() and running.result(1) == [] and not busy()
    idle = DeviceDetections(Slow(), batch=1)
    idle.shutdown(wait=False)
    idle._thread.join(5)
    assert not idle._thread.is_alive()


def test_a_search_on_the_cpu_prepares_only_the_next_frame(monkeypatch):
    """While no face is tracked, the CNN on a CPU prepares the next frame's search only: a
    face found on frame 0 makes the detections of frames 1-15 useless (they cost 0.4-2.5 s
    each there), so they are never run."""
    from fgnet_video.face.detect import FaceDetector

    searched = []
    real = FaceDetector.detect_many

    def counted(self, images, small_faces=True):
        searched.append(len(images))
        return real(self, images, small_faces)

    monkeypatch.setattr(FaceDetector, "detect_many", counted)
    frames = list(read_frames(shared_path("media", "vox_talking.mp4"), end=1.0))  # 25 frames
    stage = ParallelFacePipeline(FaceSettings(detector="cnn", min_face_size=80), 1)
    try:
        assert stage.search_ahead == 1
        found = [len(faces) for _, faces in stage.stream(frames)]
    finally:
        stage.close()
    assert found == [1] * 25
    assert sum(searched) <= 6  # frame 0, the keyframes 10 and 20, and a re-detection or so
    assert set(searched) == {1}  # on a CPU each detection is a batch of its own


def test_cnn_detections_are_batched_on_a_gpu_and_frame_by_frame_on_a_cpu():
    """On a CPU a batch of keyframes is no faster, and would hold each frame back until its
    batch's last is detected: the look-ahead is 2 keyframes there, a batch's on a GPU."""
    from fgnet_video.face.device_detections import DEVICE_BATCH, detection_batch

    assert detection_batch("cpu") == 1
    assert detection_batch("cuda") == detection_batch("cuda:1") == DEVICE_BATCH
    stage = ParallelFacePipeline(FaceSettings(detector="cnn", detect_every=10), 1)
    assert stage.look_ahead(1280 * 720 * 3) == 21
    stage.device_batch = detection_batch("cuda")  # what a GPU's stage reads ahead
    assert stage.look_ahead(640 * 360 * 3) == DEVICE_BATCH * 10 + 1
    assert stage.look_ahead(1280 * 720 * 3) == 97  # 256 MiB of 720p


def test_a_region_re_detection_runs_on_the_device_and_comes_back_in_frame_pixels():
    """The tracker's region re-detections go to the device's thread as crops (never a
    whole frame prepared ahead), and their boxes come back moved to the frame's pixels;
    without a device, the local detector does the same."""
    from concurrent.futures import Future

    from fgnet_video.face.detect import Detection
    from fgnet_video.face.parallel import _PrefetchedDetector

    class Device:
        def __init__(self):
            self.shapes = []

        def submit(self, image, small_faces):
            self.shapes.append((image.shape, small_faces))
            done: Future = Future()
            done.set_result([Detection((5.0, 6.0, 40.0, 40.0), 0.9)])  # in crop pixels
            return done

    class Local:
        def in_region(self, image, region, small_faces=True):
            return [Detection((float(region[0]), float(region[1]), 1.0, 1.0), 0.1)]

    image = np.zeros((720, 1280, 3), np.uint8)
    prefetched = _PrefetchedDetector(Local())
    prefetched.current = 7
    prefetched.pending[(7, True)] = Future()  # a whole frame's detection prepared ahead
    prefetched.device = Device()
    found = prefetched.in_region(image, (96, 200, 296, 420), True)
    assert prefetched.device.shapes == [((220, 200, 3), True)]
    assert found == [Detection((101.0, 206.0, 40.0, 40.0), 0.9)]
    assert (7, True) in prefetched.pending  # left for the keyframe it was prepared for
    prefetched.device = None
    assert prefetched.in_region(image, (8, 16, 100, 100)) == [Detection((8.0, 16.0, 1.0,
                                                                          1.0), 0.1)]
