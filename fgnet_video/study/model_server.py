"""One model on one device, fed by the analyses of several recordings at once (`--jobs N`).

    main process (fgnet_video.study.local_workers.run_parallel's loop):
        jobs -> workers; faces <- workers; ModelServer: device batches -> InferenceEngine
        scores -> each request's worker
    worker process k (one recording at a time, `fgnet_video.study.jobs.process_job`):
        decode -> face stage -> ModelClient.predict(aligned faces) -> table, sidecar, overlay

A worker runs a recording's whole analysis with a `ModelClient` in place of the engine: its
`predict` sends the aligned faces (uint8, 256 x 256 x 3) to the main process and waits for
their scores, while the recording's decode and face threads go on. The model is loaded
once, in the main process; workers never read the weights. Each worker talks to the main
process over its own pipe, which no other process writes to, so a worker that dies
mid-message spoils only its own pipe (the main process then reads end-of-file, or a message
it cannot read: either way the worker is gone), never another's.

Batching: a client asks for floor(batch_size / workers) faces at a time (at least one), so
the workers' requests together fit one device batch. The server holds the requests of the
busy workers until it has `batch_size` faces, one request from every busy worker, or the
oldest has waited GATHER_SECONDS, and scores them all in one `InferenceEngine.predict`
call: a device batch mixes faces of different recordings, and each worker gets back exactly
the scores of its own faces, in order. A model error on a batch of several requests is
retried request by request, so only the requests that fail alone fail (with the error's
one line: those recordings fail, the run goes on).

Messages (`fgnet_video.study.worker_link`): worker -> main ("started",) on taking a job,
("faces", number, images), the face networks' requests (`fgnet_video.study.face_server`) and
("done", JobOutcome); main -> worker a Job to analyse, ("answer", number, scores or error
line), or None to stop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fgnet_video.errors import error_line
from fgnet_video.inference.engine import EngineFacts, InferenceEngine, Prediction
from fgnet_video.study.worker_link import WorkerLink
from fgnet_video.threads import wait_for

if TYPE_CHECKING:
    from fgnet_video.face.device_detections import SharedFaceNetworks

log = logging.getLogger(__name__)

GATHER_SECONDS = 0.05  # how long a partial device batch waits for other workers' faces


@dataclass
class _Request:
    slot: int
    number: int
    images: np.ndarray
    arrived: float


class ModelClient:
    """The model as a worker process sees it (`fgnet_video.analysis.stream.Scorer`): `predict` is
    answered by the main process's `ModelServer` over `link` (module docstring);
    `face_networks`, when given, are the face stage's networks run beside the model
    (`fgnet_video.study.face_server`)."""

    def __init__(self, link: WorkerLink, batch_size: int, aus: tuple, facts: EngineFacts,
                 face_networks: SharedFaceNetworks | None = None):
        self.batch_size = batch_size
        self.aus = tuple(aus)
        self._facts = facts
        self._link = link
        self.face_networks = face_networks

    def describe(self) -> EngineFacts:
        """The server's engine, as `InferenceEngine.describe` gives it."""
        return self._facts

    def predict(self, images: list[np.ndarray]) -> Prediction:
        """The scores (N, n_aus) of uint8 RGB aligned faces (N, H, W, 3); UserError with
        the server's line when the model failed on them; Terminated when the main process
        is gone (stop, as on SIGTERM)."""
        return Prediction(wait_for(self._link.request("faces", np.stack(images))))


class ModelServer:
    """Gathers the workers' requests into device batches of `engine` and scores them, in
    the thread of the loop that feeds it (`add`, `drop`, `due`, `score`; module docstring).
    `client_args()` are a ModelClient's arguments after its connection."""

    def __init__(self, engine: InferenceEngine, workers: int):
        self.engine = engine
        self.client_batch = max(1, engine.batch_size // workers)
        self._requests: list[_Request] = []

    def client_args(self) -> tuple:
        return self.client_batch, tuple(self.engine.aus), self.engine.describe()

    def add(self, slot: int, number: int, images: np.ndarray) -> None:
        """A worker's request for the scores of `images`."""
        self._requests.append(_Request(slot, number, images, time.monotonic()))

    def drop(self, slot: int) -> None:
        """Forget the requests of a worker that is gone."""
        self._requests = [r for r in self._requests if r.slot != slot]

    def wait_seconds(self) -> float | None:
        """How long the feeding loop may wait for more requests before `due` holds by
        time alone (None: no request is waiting, wait for any)."""
        if not self._requests:
            return None
        return max(0.0, self._requests[0].arrived + GATHER_SECONDS - time.monotonic())

    def due(self, busy: set[int]) -> bool:
        """Whether the waiting requests should be scored now: they hold `batch_size` faces,
        every busy worker (slots in `busy`) has asked, or the oldest has waited long enough."""
        if not self._requests:
            return False
        faces = sum(len(request.images) for request in self._requests)
        return (faces >= self.engine.batch_size
                or busy <= {request.slot for request in self._requests}
                or self.wait_seconds() == 0.0)

    def score(self) -> list[tuple[int, int, np.ndarray | str]]:
        """(slot, number, scores or error line) for every waiting request, scored together
        (one `predict` call), or one by one when that fails."""
        requests, self._requests = self._requests, []
        if len(requests) > 1:
            try:
                return self._scored(requests)
            except Exception:  # noqa: BLE001 - retried request by request
                log.debug("scoring a mixed batch failed", exc_info=True)
        return [answer for request in requests for answer in self._alone(request)]

    def _alone(self, request: _Request) -> list[tuple[int, int, np.ndarray | str]]:
        try:
            return self._scored([request])
        except Exception as exc:  # noqa: BLE001 - this request fails
            log.debug("scoring a request failed", exc_info=True)
            return [(request.slot, request.number, error_line(exc))]

    def _scored(self, requests: list[_Request]) -> list[tuple[int, int, np.ndarray]]:
        scores = self.engine.predict(np.concatenate([r.images for r in requests])).scores
        answers, offset = [], 0
        for request in requests:
            count = len(request.images)
            answers.append((request.slot, request.number, scores[offset:offset + count]))
            offset += count
        return answers
