"""One model on one device, fed by the analyses of several recordings at once (`--jobs N`).

    parent process:  ModelServer thread: requests -> device batches -> InferenceEngine
                                         <- scores, back to each request's worker
    worker process k (one recording at a time, `fgnet_video.batch.process_job`):
        decode -> face stage -> ModelClient.predict(aligned faces) -> table, sidecar, overlay

A worker runs a recording's whole analysis with a `ModelClient` in place of the engine:
its `predict` sends the aligned faces (uint8, 256 x 256 x 3) to the parent and waits for
their scores, while the recording's decode and face threads go on. The model is loaded
once, in the parent; workers never read the weights.

Batching: a client asks for ceil(batch_size / workers) faces at a time, so the workers
together fill one device batch. The server takes a request, then gathers the other busy
workers' requests (waiting at most GATHER_SECONDS) until it holds `batch_size` faces or one
request from every busy worker, and scores them all in one `InferenceEngine.predict` call:
a device batch mixes faces of different recordings; each worker gets back exactly the
scores of its own faces, in order. A model error (non-finite heatmaps, out of memory at one
face per batch) fails the requests of that batch, each with the error's one line (those
recordings fail; the run goes on).

Messages on the request queue: ("begin", slot) and ("end", slot) around each recording
(the server waits only for busy workers), ("faces", slot, number, images), and None to
stop. Replies on the worker's own queue: (number, scores) or (number, error line); a
reply whose number is not the one awaited (a request abandoned by an interrupt) is skipped.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from fgnet_video.errors import UserError, error_line
from fgnet_video.inference import InferenceEngine, Prediction

log = logging.getLogger(__name__)

GATHER_SECONDS = 0.05  # how long a partial device batch waits for other workers' faces


@dataclass
class _Request:
    slot: int
    number: int
    images: np.ndarray


class ModelClient:
    """The model as a worker process sees it (`fgnet_video.pipeline.Scorer`): `predict`
    is answered by the parent's `ModelServer` (module docstring). Made in the worker from
    `ModelServer.client_args()` and the worker's slot."""

    def __init__(self, slot: int, requests, replies: list, batch_size: int, aus: tuple,
                 record: dict):
        self.slot = slot
        self.batch_size = batch_size
        self.aus = tuple(aus)
        self._record = record
        self._requests = requests
        self._replies = replies[slot]
        self._number = 0

    def record(self) -> dict:
        return self._record

    def begin(self) -> None:
        """A recording starts: the server waits for this worker's faces from now on."""
        self._requests.put(("begin", self.slot))

    def end(self) -> None:
        """The recording is done: the server no longer waits for this worker."""
        self._requests.put(("end", self.slot))

    def predict(self, images: list[np.ndarray]) -> Prediction:
        """The scores (N, n_aus) of uint8 RGB aligned faces (N, H, W, 3); UserError with
        the server's line when the model failed on their batch."""
        self._number += 1
        self._requests.put(("faces", self.slot, self._number, np.stack(images)))
        while True:
            number, answer = self._replies.get()
            if number == self._number:
                break
        if isinstance(answer, str):
            raise UserError(answer)
        return Prediction(answer)


class ModelServer:
    """Serves `engine` to `workers` worker processes from a thread of this process (module
    docstring). `client_args()` go to each worker (with its slot, 0 .. workers - 1);
    `start()` before the workers ask, `stop()` after (it finishes the batch at hand)."""

    def __init__(self, engine: InferenceEngine, workers: int, context):
        self.engine = engine
        self.requests = context.Queue()
        self.replies = [context.Queue() for _ in range(workers)]
        self.client_batch = max(1, math.ceil(engine.batch_size / workers))
        self._busy: set[int] = set()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="model-server", daemon=True)

    def client_args(self) -> tuple:
        """ModelClient's arguments after the slot."""
        return (self.requests, self.replies, self.client_batch, tuple(self.engine.aus),
                self.engine.record())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.requests.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while not self._stopping:
            batch = self._gather()
            if batch:
                self._score(batch)

    def _take(self, message, batch: list[_Request]) -> None:
        """Note a message: a worker's begin or end, faces (added to `batch`), or stop."""
        if message is None:
            self._stopping = True
        elif message[0] == "begin":
            self._busy.add(message[1])
        elif message[0] == "end":
            self._busy.discard(message[1])
        else:
            batch.append(_Request(*message[1:]))

    def _gather(self) -> list[_Request]:
        """The requests of one device batch: those waiting, then more until the batch is
        full, every busy worker has asked, or GATHER_SECONDS have passed."""
        batch: list[_Request] = []
        while not batch and not self._stopping:
            self._take(self.requests.get(), batch)
        deadline = time.monotonic() + GATHER_SECONDS
        while not self._stopping and not self._enough(batch):
            remaining = deadline - time.monotonic()
            try:
                message = (self.requests.get_nowait() if remaining <= 0
                           else self.requests.get(timeout=remaining))
            except queue.Empty:
                break
            self._take(message, batch)
        return batch

    def _enough(self, batch: list[_Request]) -> bool:
        faces = sum(len(request.images) for request in batch)
        return faces >= self.engine.batch_size or self._busy <= {r.slot for r in batch}

    def _score(self, batch: list[_Request]) -> None:
        """Score the batch's faces in one call and answer each request."""
        try:
            scores = self.engine.predict(np.concatenate([r.images for r in batch])).scores
        except Exception as exc:  # noqa: BLE001 - the requests fail, the server goes on
            log.debug("scoring a batch failed", exc_info=True)
            line = error_line(exc)
            for request in batch:
                self.replies[request.slot].put((request.number, line))
            return
        offset = 0
        for request in batch:
            count = len(request.images)
            self.replies[request.slot].put((request.number, scores[offset:offset + count]))
            offset += count
