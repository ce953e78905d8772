"""One model fed by several recordings' analyses (`--jobs N`): fgnet_video.model_server and
the study run built on it."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fgnet_video import model_server
from fgnet_video.batch import analyze_inputs
from fgnet_video.errors import UserError
from fgnet_video.inference import Prediction
from fgnet_video.model_server import ModelClient, ModelServer
from fgnet_video.options import AnalyzeOptions

from .conftest import shared_path


class RecordingEngine:
    """An engine whose scores are each face's mean pixel value (so a face's score says
    whose face it was), recording the sizes of the batches it was given."""

    aus = (1, 2)

    def __init__(self, batch_size: int, error: str | None = None):
        self.batch_size = batch_size
        self.error = error
        self.calls: list[int] = []

    def predict(self, images: np.ndarray) -> Prediction:
        self.calls.append(len(images))
        if self.error is not None:
            raise UserError(self.error)
        means = images.reshape(len(images), -1).mean(axis=1)
        return Prediction(np.stack([means, -means], axis=1))

    def record(self) -> dict:
        return {"checkpoint": {}, "run": {"batch_size": self.batch_size}}


def faces(value: int, n: int) -> list[np.ndarray]:
    return [np.full((4, 4, 3), value + k, np.uint8) for k in range(n)]


@pytest.fixture
def served(monkeypatch):
    """(engine factory -> (server, clients)); the server is stopped at the end. Partial
    batches wait up to 30 s, so a test that relies on the timeout hangs visibly."""
    monkeypatch.setattr(model_server, "GATHER_SECONDS", 30.0)
    servers = []

    def start(engine, workers: int = 2):
        server = ModelServer(engine, workers, multiprocessing.get_context("spawn"))
        server.start()
        servers.append(server)
        return server, [ModelClient(slot, *server.client_args()) for slot in range(workers)]

    yield start
    for server in servers:
        server.stop()


def in_threads(*calls) -> list:
    """Run the calls at once; their results (or exceptions), in order."""
    results: list = [None] * len(calls)

    def run(k, call):
        try:
            results[k] = call()
        except Exception as exc:  # noqa: BLE001 - compared by the test
            results[k] = exc

    threads = [threading.Thread(target=run, args=(k, c)) for k, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive(), "a request was never answered"
    return results


def test_clients_ask_for_a_share_of_the_device_batch(served):
    server, clients = served(RecordingEngine(batch_size=16), workers=3)
    assert [c.batch_size for c in clients] == [6, 6, 6]  # ceil(16 / 3)
    assert clients[0].aus == (1, 2) and clients[2].record()["run"]["batch_size"] == 16


def test_one_device_batch_mixes_the_faces_of_busy_workers(served):
    engine = RecordingEngine(batch_size=8)
    server, (a, b) = served(engine)
    a.begin()
    b.begin()
    got_a, got_b = in_threads(lambda: a.predict(faces(10, 3)), lambda: b.predict(faces(100, 2)))
    assert engine.calls == [5]  # one device batch held both workers' faces
    np.testing.assert_allclose(got_a.scores[:, 0], [10, 11, 12])
    np.testing.assert_allclose(got_b.scores[:, 0], [100, 101])
    np.testing.assert_allclose(got_b.scores[:, 1], [-100, -101])


def test_a_full_batch_goes_without_waiting_for_other_workers(served):
    engine = RecordingEngine(batch_size=4)
    server, (a, b) = served(engine)
    a.begin()
    b.begin()  # busy, but never asks: a full batch must not wait for it
    (got,) = in_threads(lambda: a.predict(faces(0, 4)))
    assert engine.calls == [4] and len(got.scores) == 4


def test_idle_workers_are_not_waited_for(served):
    engine = RecordingEngine(batch_size=8)
    server, (a, b) = served(engine)
    a.begin()
    b.begin()
    b.end()  # b's recording is done
    (got,) = in_threads(lambda: a.predict(faces(0, 1)))
    assert engine.calls == [1] and got.scores.shape == (1, 2)


def test_a_model_error_fails_that_batch_with_one_line_and_the_server_goes_on(served):
    engine = RecordingEngine(batch_size=8, error="the model produced non-finite heatmaps")
    server, (a, b) = served(engine)
    a.begin()
    b.begin()
    results = in_threads(lambda: a.predict(faces(0, 1)), lambda: b.predict(faces(5, 1)))
    assert [str(r) for r in results] == ["the model produced non-finite heatmaps"] * 2
    assert all(isinstance(r, UserError) for r in results)
    engine.error = None
    (got,) = in_threads(lambda: a.predict(faces(7, 1)), lambda: b.predict(faces(9, 1)))[:1]
    np.testing.assert_allclose(got.scores[:, 0], [7])


def test_an_abandoned_request_s_late_reply_is_skipped(served):
    server, (a, b) = served(RecordingEngine(batch_size=8))
    a.begin()
    server.replies[0].put((0, np.zeros((9, 2))))  # the answer to an earlier, abandoned request
    (got,) = in_threads(lambda: a.predict(faces(3, 2)))
    np.testing.assert_allclose(got.scores[:, 0], [3, 4])


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
        engine.record()  # the checkpoint's sha256 is read once per engine
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
