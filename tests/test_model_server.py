"""One model fed by several recordings' analyses (`--jobs N`): fgnet_video.study.model_server and
the study run built on it."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fgnet_video.errors import UserError
from fgnet_video.inference.engine import EngineFacts, Prediction
from fgnet_video.options import AnalyzeOptions
from fgnet_video.study import model_server
from fgnet_video.study.model_server import ModelClient, ModelServer
from fgnet_video.study.run import analyze_inputs
from fgnet_video.study.worker_link import WorkerLink

from .conftest import shared_path


class RecordingEngine:
    """An engine whose scores are each face's mean pixel value (so a face's score says
    whose face it was), recording the sizes of the batches it was given."""

    aus = (1, 2)

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.calls: list[int] = []

    def predict(self, images: np.ndarray) -> Prediction:
        self.calls.append(len(images))
        means = images.reshape(len(images), -1).mean(axis=1)
        return Prediction(np.stack([means, -means], axis=1))

    def describe(self) -> EngineFacts:
        return EngineFacts(None, "0" * 64, {}, "bp4d", self.aus, ("early",), "cpu",
                           torch.float32, self.batch_size)


def faces(value: int, n: int) -> np.ndarray:
    return np.stack([np.full((4, 4, 3), value + k, np.uint8) for k in range(n)])


def test_clients_ask_for_a_share_of_the_device_batch():
    server = ModelServer(RecordingEngine(batch_size=16), workers=3)
    batch, aus, facts = server.client_args()
    assert batch == 5 and aus == (1, 2) and facts.batch_size == 16  # 3 x 5 <= 16


def test_one_device_batch_mixes_the_faces_of_busy_workers():
    engine = RecordingEngine(batch_size=8)
    server = ModelServer(engine, workers=2)
    server.add(0, 1, faces(10, 3))
    assert not server.due({0, 1})  # worker 1 is busy and has not asked yet
    server.add(1, 7, faces(100, 2))
    assert server.due({0, 1})
    answers = server.score()
    assert engine.calls == [5]  # one device batch held both workers' faces
    assert [(slot, number) for slot, number, _ in answers] == [(0, 1), (1, 7)]
    np.testing.assert_allclose(answers[0][2][:, 0], [10, 11, 12])
    np.testing.assert_allclose(answers[1][2], [[100, -100], [101, -101]])
    assert server.wait_seconds() is None and not server.due({0, 1})


def test_a_full_batch_or_a_long_wait_goes_without_the_other_workers(monkeypatch):
    server = ModelServer(RecordingEngine(batch_size=4), workers=2)
    server.add(0, 1, faces(0, 4))
    assert server.due({0, 1})  # full
    server.score()
    monkeypatch.setattr(model_server, "GATHER_SECONDS", 0.0)
    server.add(0, 2, faces(0, 1))
    assert server.due({0, 1})  # waited long enough
    monkeypatch.setattr(model_server, "GATHER_SECONDS", 30.0)
    assert 29 < server.wait_seconds() <= 30 and not server.due({0, 1})
    assert server.due({0})  # the other worker is idle: not waited for


def test_a_failing_mixed_batch_fails_only_the_requests_that_fail_alone():
    class PickyEngine(RecordingEngine):
        def predict(self, images):
            if (images == 255).any():
                self.calls.append(len(images))
                raise UserError("the model produced non-finite heatmaps")
            return super().predict(images)

    engine = PickyEngine(batch_size=8)
    server = ModelServer(engine, workers=2)
    server.add(0, 1, faces(250, 6))  # holds a 255 face
    server.add(1, 1, faces(5, 2))
    bad, good = server.score()
    assert engine.calls == [8, 6, 2]  # together, then one by one
    assert bad == (0, 1, "the model produced non-finite heatmaps")
    np.testing.assert_allclose(good[2][:, 0], [5, 6])


def test_a_gone_worker_s_requests_are_dropped():
    server = ModelServer(RecordingEngine(batch_size=8), workers=2)
    server.add(0, 1, faces(0, 2))
    server.add(1, 1, faces(9, 1))
    server.drop(0)
    assert [(slot, number) for slot, number, _ in server.score()] == [(1, 1)]


def test_the_client_gets_its_own_answer_and_skips_a_stale_one():
    ours, theirs = multiprocessing.Pipe()
    client = ModelClient(WorkerLink(theirs), 4, (1, 2), {"run": {}})
    served = []

    def serve():
        kind, number, images = ours.recv()
        ours.send(("answer", number + 7, np.zeros((9, 2))))  # nobody asked for this one
        ours.send(("answer", number, np.full((len(images), 2), 3.0)))
        kind, number, images = ours.recv()
        ours.send(("answer", number, "out of memory on cuda even with one face per batch"))
        served.append(kind)

    thread = threading.Thread(target=serve)
    thread.start()
    assert client.predict(list(faces(0, 2))).scores.tolist() == [[3.0, 3.0]] * 2
    with pytest.raises(UserError, match="out of memory"):
        client.predict(list(faces(0, 1)))
    thread.join(timeout=10)
    assert served == ["faces"]


def clips(folder: Path) -> list[str]:
    folder.mkdir()
    names = ["vox_talking.mp4", "webcam_lamp.wmv", "sample_disfa.avi"]
    for name in names:
        shutil.copy(shared_path("media", name), folder / name)
    return [str(folder / name) for name in names]


def test_a_study_loads_the_model_once_and_gives_the_sequential_tables(tiny_weights, tmp_path):
    inputs = clips(tmp_path / "in")
    options = {"fps": 5.0}
    sequential = analyze_inputs(inputs, AnalyzeOptions.from_kwargs(
        weights=str(tiny_weights), **options), out_dir=tmp_path / "seq")
    weights = tmp_path / "once.safetensors"
    shutil.copy(tiny_weights, weights)
    loads = []

    def remove_weights(engine) -> None:  # workers that read the weights would now fail
        loads.append(engine)
        engine.describe()  # the checkpoint's sha256 is read once per engine
        weights.unlink()

    shared = analyze_inputs(inputs, AnalyzeOptions.from_kwargs(
        weights=str(weights), jobs=3, **options), out_dir=tmp_path / "par",
        on_engine=remove_weights)
    assert len(loads) == 1
    assert len(shared.done) == len(sequential.done) == 3 and not shared.failed
    for name in ("vox_talking", "webcam_lamp", "sample_disfa"):
        serial = pd.read_csv(tmp_path / "seq" / f"{name}.csv")
        parallel = pd.read_csv(tmp_path / "par" / f"{name}.csv")
        assert len(serial) > 1
        pd.testing.assert_frame_equal(serial, parallel, check_exact=False, atol=2e-6)
        sidecar = json.loads((tmp_path / "par" / f"{name}.json").read_text())
        expected = json.loads((tmp_path / "seq" / f"{name}.json").read_text())
        assert sidecar["checkpoint"]["sha256"] == expected["checkpoint"]["sha256"]
        assert sidecar["settings"]["batch_size"] == expected["settings"]["batch_size"]


def _exit_with(code: int) -> None:
    os._exit(code)


def _sleep() -> None:
    time.sleep(60)


def _send_until_stopped(connection) -> None:
    """A busy worker as the run's interrupt finds it: one thread blocked sending a request
    larger than the pipe holds (the main process reads no more), the main thread unwinding
    on SIGTERM and waiting for that thread (as a job's stages wait for theirs)."""
    from fgnet_video.errors import Terminated

    def stop(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, stop)
    link = WorkerLink(connection)
    sender = threading.Thread(target=link.request, args=("detect", b"x" * (64 << 20)))
    sender.start()
    try:
        while True:
            time.sleep(0.05)
    except Terminated:
        sender.join()
        os._exit(143)


def test_an_interrupted_run_stops_a_worker_blocked_sending():
    """The run's interrupt closes the workers' pipes before SIGTERM: a worker blocked sending
    to the main process (a 64 MB request here, a large frame to detect on in a run) fails
    its send and stops by itself, instead of being killed WORKER_STOP_SECONDS later (CI saw
    a --jobs 2 CNN run take 5.5 s to stop so)."""
    from fgnet_video.study.local_workers import _stop_workers, _Worker

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_send_until_stopped, args=(theirs,))
    process.start()
    theirs.close()
    assert ours.poll(120)  # the request has begun to arrive: the sender fills the pipe
    time.sleep(0.2)
    _stop_workers([_Worker(0, process, ours, 0)])
    assert process.exitcode == 143  # stopped by itself, not killed (-9)


@pytest.mark.parametrize("how, expected", [  # the failure line is "the worker process
    ("exit", "exit status 3"),                  # stopped (<this>)" (test_nothing_lost)
    (signal.SIGKILL, "killed by SIGKILL, e.g. for lack of memory"),
    (signal.SIGTERM, "stopped by SIGTERM"),
    (40, "killed by signal 40"),  # a signal without a name
])
def test_a_lost_worker_is_named_for_how_it_stopped(how, expected):
    from fgnet_video.study.local_workers import _how_stopped

    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_exit_with if how == "exit" else _sleep,
                              args=(3,) if how == "exit" else ())
    process.start()
    if how != "exit":
        os.kill(process.pid, how)  # whether or not the child has finished starting
    # _how_stopped is asked once the worker's pipe has closed, i.e. as it ends: wait for that
    # however long the spawn takes on a loaded machine (its own grace period is for exiting)
    process.join(120)
    assert _how_stopped(process) == expected
