"""A study's face networks in its main process (`--jobs N`): the worker's end of its pipe
(fgnet_video.study.worker_link), the main process's FaceServer (batches across workers), and
a study's tables with the CNN detector."""

from __future__ import annotations

import multiprocessing
import shutil
import threading

import numpy as np
import pandas as pd
import pytest

from fgnet_video.errors import Terminated, UserError
from fgnet_video.study.face_server import FaceServer
from fgnet_video.study.worker_link import WorkerLink

from .conftest import same_clip_twice, shared_path


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
    """Records the batches it is given; `entered` is set once it has one, which then waits
    for `gate`. A frame's detections are its first pixel's value; a frame whose value is
    `failing` fails its whole batch."""

    def __init__(self, failing: int | None = None):
        self.entered, self.gate, self.batches = threading.Event(), threading.Event(), []
        self.failing = failing

    def detect_many(self, images, small_faces):
        self.entered.set()
        if not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        self.batches.append((len(images), small_faces))
        values = [int(image[0, 0, 0]) for image in images]
        if self.failing in values:
            raise RuntimeError("CUDA error: out of memory")
        return [[value] for value in values]


def frame(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


class Replies:
    """Each worker's answers, (number, answer), as the device thread sends them."""

    def __init__(self):
        self.got: dict[int, list] = {}
        self.changed = threading.Condition()

    def to(self, worker: int):
        def reply(number, answer):
            with self.changed:
                self.got.setdefault(worker, []).append((number, answer))
                self.changed.notify_all()
        return reply

    def wait(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(
                lambda: sum(map(len, self.got.values())) >= count, 10), self.got


def holding(server: FaceServer, detector: GatedDetector, replies: Replies) -> None:
    """Worker 9's request 1 has been taken by the device thread, which waits in it."""
    server._detector = detector
    server.submit(9, 1, "detect", (frame(99), True), replies.to(9))
    assert detector.entered.wait(10)


def test_the_workers_detections_run_in_one_batch_and_go_back_to_each():
    server, detector, replies = FaceServer(None, "cpu"), GatedDetector(), Replies()
    try:
        holding(server, detector, replies)
        server.submit(0, 1, "detect", (frame(10), True), replies.to(0))
        server.submit(1, 1, "detect", (frame(20), True), replies.to(1))
        server.submit(1, 2, "detect", (frame(21), True), replies.to(1))
        server.cancel(1, 2)  # not started: never run, never answered
        server.submit(1, 3, "detect", (frame(22), False), replies.to(1))  # another pass
        server.submit(0, 2, "detect", (frame(11), True), replies.to(0))
        detector.gate.set()
        replies.wait(5)
    finally:
        server.shutdown()
    # in the order asked: the other pass waits for its turn, then the last one
    assert detector.batches == [(1, True), (2, True), (1, False), (1, True)]
    assert replies.got == {9: [(1, [99])], 0: [(1, [10]), (2, [11])], 1: [(1, [20]), (3, [22])]}


def test_descriptors_of_several_requests_are_read_together_and_split_back():
    server, detector, replies = FaceServer(None, "cpu"), GatedDetector(), Replies()
    calls = []

    def read_chips(chips):
        calls.append(len(chips))
        return chips.reshape(len(chips), -1)[:, :2].astype(np.float64)

    server._read_chips = read_chips
    try:
        holding(server, detector, replies)
        server.submit(0, 2, "describe", (np.stack([frame(1), frame(2)]),), replies.to(0))
        server.submit(1, 1, "describe", (np.stack([frame(3)]),), replies.to(1))
        detector.gate.set()
        replies.wait(3)
    finally:
        server.shutdown()
    assert calls == [3]
    assert [(n, a.tolist()) for n, a in replies.got[0]] == [(2, [[1, 1], [2, 2]])]
    assert [(n, a.tolist()) for n, a in replies.got[1]] == [(1, [[3, 3]])]


def test_a_failing_mixed_batch_fails_only_the_request_that_fails_alone():
    server, detector, replies = FaceServer(None, "cpu"), GatedDetector(failing=66), Replies()
    try:
        holding(server, detector, replies)
        server.submit(0, 1, "detect", (frame(10), True), replies.to(0))
        server.submit(1, 1, "detect", (frame(66), True), replies.to(1))  # too large, say
        server.submit(0, 2, "detect", (frame(11), True), replies.to(0))
        detector.gate.set()
        replies.wait(4)
    finally:
        server.shutdown()
    # the held batch, the mixed one, then its halves: [10] and [66, 11], whose halves
    # [66] (fails alone) and [11]
    assert detector.batches == [(1, True), (3, True), (1, True), (2, True), (1, True),
                                (1, True)]
    assert replies.got[0] == [(1, [10]), (2, [11])]
    assert replies.got[1] == [(1, "RuntimeError: CUDA error: out of memory")]


def test_a_failing_batch_is_halved_down_to_the_request_that_fails_alone():
    """One bad request in a device batch of 16 costs 9 batches (halving), not 17 (each
    alone), and fails alone."""
    from fgnet_video.face.device_detections import DeviceBatches

    gate, sizes = threading.Event(), []

    def run(kind, items):
        if kind == "hold":  # the first batch holds the thread while the 16 queue up
            gate.wait()
            return items
        sizes.append(len(items))
        if 13 in items:
            raise RuntimeError("CUDA error: out of memory")
        return [10 * item for item in items]

    batches = DeviceBatches(run)
    try:
        batches.submit(0, "hold")
        futures = [batches.submit(i, "detect") for i in range(16)]
        gate.set()
        answers = [f.exception(timeout=10) or f.result() for f in futures]
    finally:
        batches.shutdown()
    assert sizes == [16, 8, 8, 4, 4, 2, 1, 1, 2]
    assert [a for i, a in enumerate(answers) if i != 13] == [10 * i for i in range(16) if i != 13]
    assert isinstance(answers[13], RuntimeError)


def test_a_gone_worker_s_waiting_requests_are_dropped():
    server, detector, replies = FaceServer(None, "cpu"), GatedDetector(), Replies()
    try:
        holding(server, detector, replies)
        server.submit(1, 1, "detect", (frame(1), True), replies.to(1))
        server.submit(1, 2, "describe", (np.stack([frame(2)]),), replies.to(1))
        server.drop(1)
        server.submit(0, 1, "detect", (frame(3), True), replies.to(0))  # after them
        detector.gate.set()
        replies.wait(2)
    finally:
        server.shutdown()
    assert replies.got == {9: [(1, [99])], 0: [(1, [3])]}


def test_a_late_answer_never_forgets_a_newer_request_of_the_same_number():
    """Worker 9's request 1 runs when the worker is dropped; a request 1 asked again under
    that name (numbers restart) is still known, so cancellable, after the old one's
    answer."""
    second = threading.Event()

    class TwoGates(GatedDetector):
        def detect_many(self, images, small_faces):
            if self.batches:  # the second batch waits on its own gate
                self.gate.clear()
                second.set()
            return super().detect_many(images, small_faces)

    server, detector, replies = FaceServer(None, "cpu"), TwoGates(), Replies()
    try:
        holding(server, detector, replies)  # (9, 1) runs and cannot be cancelled
        server.drop(9)
        server.submit(9, 1, "detect", (frame(5), True), replies.to(9))
        server.submit(9, 2, "describe", (np.stack([frame(6)]),), replies.to(9))
        detector.gate.set()
        assert second.wait(10)  # the old (9, 1) is answered, the new one runs
        assert replies.got[9] == [(1, [99])]
        assert not server._requests[9, 1].done()
        server.cancel(9, 2)  # still waiting: dropped
        detector.gate.set()
        replies.wait(2)
    finally:
        server.shutdown()
    assert replies.got[9] == [(1, [99]), (1, [5])]


def test_a_request_held_for_the_next_batch_is_cancelled_by_shutdown():
    """The device thread runs a batch of descriptors and holds the detection behind it for
    its next batch: shutting down cancels that one too (it never runs)."""
    server, detector, replies = FaceServer(None, "cpu"), GatedDetector(), Replies()
    describing, described = threading.Event(), threading.Event()

    def read_chips(chips):
        describing.set()
        described.wait(10)
        return np.zeros((len(chips), 2))

    server._read_chips = read_chips
    try:
        holding(server, detector, replies)
        server.submit(0, 1, "describe", (np.stack([frame(1)]),), replies.to(0))
        server.submit(0, 2, "detect", (frame(2), True), replies.to(0))
        detector.gate.set()
        assert describing.wait(10)  # (0, 2) is held for the next batch
        server.shutdown(wait=False)
        described.set()
        server.join()
    finally:
        server.shutdown()
    assert detector.batches == [(1, True)]
    assert [number for number, _ in replies.got[0]] == [1]


def test_a_message_cut_off_by_a_signal_is_the_last_one_sent():
    class Interrupted:
        def __init__(self):
            self.sent = []

        def send(self, message):
            if not self.sent:
                self.sent.append("half")
                raise KeyboardInterrupt
            self.sent.append(message)

        def send_bytes(self, data):
            self.send(data)

        def recv(self):
            closed.wait(10)
            raise EOFError

    closed = threading.Event()
    connection = Interrupted()
    link = WorkerLink(connection)
    with pytest.raises(TypeError):  # cannot be pickled: nothing sent, the link is fine
        link.send(("detect", 1, threading.Lock(), True))
    assert connection.sent == []
    with pytest.raises(KeyboardInterrupt):
        link.send(("faces", 1, np.zeros(3)))
    with pytest.raises(OSError):
        link.send(("done", None))
    assert connection.sent == ["half"]
    closed.set()


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


def test_a_worker_s_recordings_share_one_face_stage_on_the_shared_networks(
        tiny_weights, tmp_path, monkeypatch):
    """What a --jobs worker does (`local_workers._worker_main`): its jobs one after another
    inside `face_stages_kept`, with a model that carries `face_networks`: one face stage is
    built for all of them, its detections and descriptors go to the shared networks, and
    the tables are those of single runs."""
    from fgnet_video.analysis import recording
    from fgnet_video.face.detect import FaceDetector
    from fgnet_video.face.device_detections import DeviceDetections, SharedFaceNetworks
    from fgnet_video.face.parallel import ParallelFacePipeline
    from fgnet_video.face.person import descriptor_reader
    from fgnet_video.inference.engine import InferenceEngine
    from fgnet_video.study.jobs import process_job

    options, plan = same_clip_twice(tmp_path, tiny_weights, "cnn")
    engine = InferenceEngine.from_weights(**options.model.engine_kwargs())
    pools, chips = [], []
    read = descriptor_reader("cpu")

    def detections():
        pools.append(DeviceDetections(FaceDetector.for_settings(options.face), 1))
        return pools[-1]

    engine.face_networks = SharedFaceNetworks("cpu", detections,
                                              lambda c: chips.append(len(c)) or read(c))
    built = []
    original = ParallelFacePipeline.__init__
    monkeypatch.setattr(ParallelFacePipeline, "__init__",
                        lambda self, *a, **k: built.append(self) or original(self, *a, **k))
    with recording.face_stages_kept():
        outcomes = [process_job(job, engine, plan) for job in plan.jobs]
    assert [o.status for o in outcomes] == ["done", "done"]
    assert len(built) == 1 and built[0].shared is engine.face_networks
    assert len(pools) == 1 and sum(chips) >= 2  # one pool for both, descriptors shared
    tables = [(tmp_path / "out" / f"c{k}.csv").read_bytes() for k in range(2)]
    assert tables[0] == tables[1]
