"""A study's face networks in its main process (`--jobs N`): the worker's end of its pipe
(fgnet_video.study.worker_link), the main process's FaceServer (batches across workers), and
a study's tables with the CNN detector."""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time

import numpy as np
import pandas as pd
import pytest

from fgnet_video.errors import Terminated, UserError
from fgnet_video.study.face_server import FaceServer
from fgnet_video.study.worker_link import WorkerLink

from .conftest import shared_path


def test_answers_reach_their_requests_and_other_messages_wait_in_order():
    ours, theirs = multiprocessing.Pipe()
    link = WorkerLink(theirs)
    first, second = link.request("detect", "frame a", True), link.request("describe", "chips")
    sent = [ours.recv(), ours.recv()]
    assert sent == [("detect", 1, "frame a", True), ("describe", 2, "chips")]
    ours.send("job 1")
    ours.send(("answer", 2, np.ones(3)))
    ours.send(("answer", 1, "no face network on this device"))
    ours.send(None)
    assert second.result(5).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(UserError, match="no face network"):
        first.result(5)
    assert link.next_message() == "job 1" and link.next_message() is None


def test_a_cancelled_request_is_cancelled_upstream_and_its_late_answer_ignored():
    ours, theirs = multiprocessing.Pipe()
    link = WorkerLink(theirs)
    wanted, dropped = link.request("detect", 1, True), link.request("detect", 2, True)
    ours.recv(), ours.recv()
    assert dropped.cancel()
    assert ours.recv() == ("cancel", 2)
    ours.send(("answer", 2, ["late"]))
    ours.send(("answer", 1, ["faces"]))
    assert wanted.result(5) == ["faces"] and dropped.cancelled()


def test_when_the_main_process_is_gone_the_worker_stops():
    ours, theirs = multiprocessing.Pipe()
    link = WorkerLink(theirs)
    waiting = link.request("faces", np.zeros(2))
    ours.recv()
    ours.close()
    with pytest.raises(Terminated):
        waiting.result(5)
    with pytest.raises(EOFError):
        link.next_message()
    with pytest.raises(Terminated):
        link.request("detect", 0, True).result(5)


class GatedDetector:
    """Records the batches it is given; waits for `gate` first. A frame's detections are
    its first pixel's value."""

    def __init__(self):
        self.gate, self.batches = threading.Event(), []

    def detect_many(self, images, small_faces):
        self.gate.wait(5)
        self.batches.append((len(images), small_faces))
        return [[int(image[0, 0, 0])] for image in images]


def frame(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def replies() -> tuple[list, callable]:
    got: list = []
    return got, lambda number, answer: got.append((number, answer))


def test_the_workers_detections_run_in_one_batch_and_go_back_to_each():
    server = FaceServer(None, "cpu")
    server._detector = detector = GatedDetector()
    zero, to_zero = replies()
    one, to_one = replies()
    try:
        server.submit(0, 1, "detect", (frame(10), True), to_zero)  # taken alone: it waits
        time.sleep(0.2)
        server.submit(0, 2, "detect", (frame(11), True), to_zero)
        server.submit(1, 1, "detect", (frame(20), True), to_one)
        server.submit(1, 2, "detect", (frame(21), True), to_one)
        server.cancel(1, 2)  # not started: never run, never answered
        server.submit(1, 3, "detect", (frame(22), False), to_one)  # another kind of pass
        detector.gate.set()
        for _ in range(50):
            if len(zero) + len(one) == 4:
                break
            time.sleep(0.1)
    finally:
        server.shutdown()
    assert detector.batches == [(1, True), (2, True), (1, False)]
    assert zero == [(1, [10]), (2, [11])]
    assert one == [(1, [20]), (3, [22])]


def test_descriptors_of_several_requests_are_read_together_and_split_back():
    server = FaceServer(None, "cpu")
    calls = []

    def read_chips(chips):
        calls.append(len(chips))
        return chips.reshape(len(chips), -1)[:, :2].astype(np.float64)

    server._read_chips = read_chips
    server._detector = detector = GatedDetector()
    got, reply = replies()
    try:
        server.submit(0, 1, "detect", (frame(0), True), reply)  # holds the thread
        time.sleep(0.2)
        server.submit(0, 2, "describe", (np.stack([frame(1), frame(2)]),), reply)
        server.submit(1, 1, "describe", (np.stack([frame(3)]),), reply)
        detector.gate.set()
        for _ in range(50):
            if len(got) == 3:
                break
            time.sleep(0.1)
    finally:
        server.shutdown()
    assert calls == [3]
    assert [(n, a.tolist()) for n, a in got[1:]] == [(2, [[1, 1], [2, 2]]), (1, [[3, 3]])]


def test_a_failed_batch_answers_its_error_line_and_a_gone_worker_s_requests_are_dropped():
    class Broken(GatedDetector):
        def detect_many(self, images, small_faces):
            self.gate.wait(5)
            raise RuntimeError("CUDA error: out of memory")

    server = FaceServer(None, "cpu")
    server._detector = detector = Broken()
    got, reply = replies()
    gone, to_gone = replies()
    try:
        server.submit(0, 1, "detect", (frame(0), True), reply)
        time.sleep(0.2)
        server.submit(1, 1, "detect", (frame(1), True), to_gone)
        server.drop(1)
        detector.gate.set()
        for _ in range(50):
            if got:
                break
            time.sleep(0.1)
    finally:
        server.shutdown()
    assert got == [(1, "RuntimeError: CUDA error: out of memory")] and gone == []


def test_a_cnn_study_gives_the_sequential_tables_with_its_networks_in_the_main_process(
        tiny_weights, tmp_path, monkeypatch):
    """--jobs 2 --detector cnn: every detection and descriptor of the workers runs in the
    main process's FaceServer, and the tables are those of the recordings analysed one
    after another in this process."""
    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.study.run import analyze_inputs

    folder = tmp_path / "in"
    folder.mkdir()
    names = ["vox_talking.mp4", "webcam_lamp.wmv"]
    for name in names:
        shutil.copy(shared_path("media", name), folder / name)
    served = []
    run = FaceServer._run
    monkeypatch.setattr(FaceServer, "_run",
                        lambda self, kind, items: served.append(kind[0]) or run(self, kind, items))
    options = {"fps": 5.0, "detector": "cnn", "weights": str(tiny_weights)}
    sequential = analyze_inputs([str(folder)], AnalyzeOptions.from_kwargs(**options),
                                out_dir=tmp_path / "seq")
    assert served == []
    parallel = analyze_inputs([str(folder)], AnalyzeOptions.from_kwargs(jobs=2, **options),
                              out_dir=tmp_path / "par")
    assert len(parallel.done) == len(sequential.done) == 2 and not parallel.failed
    assert "detect" in served and "describe" in served
    for name in ("vox_talking", "webcam_lamp"):
        serial = pd.read_csv(tmp_path / "seq" / f"{name}.csv")
        assert len(serial) > 1 and serial["person_id"].notna().all()
        pd.testing.assert_frame_equal(serial, pd.read_csv(tmp_path / "par" / f"{name}.csv"),
                                      check_exact=False, atol=2e-6)
