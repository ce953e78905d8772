"""The face networks of a study's worker processes (`--jobs N`), run by its main process on
the model's device: CNN detections and person descriptors of every recording being analysed
go to one device, batched across recordings as the model's faces are.

    worker k (its face stage, `fgnet_video.face.parallel.ParallelFacePipeline` with
    `SharedFaceNetworks`): frames to detect -> ("detect", number, image, small_faces)
                           face chips       -> ("describe", number, chips)
    main process (`FaceServer`, fed by `fgnet_video.study.local_workers.run_parallel`):
        one `DeviceBatches` thread: the waiting requests of one kind, from any workers,
        in one batch (`FaceDetector.detect_many`, the descriptor network)
        -> ("answer", number, detections or descriptors or error line) to each worker

The networks start on the first request, with the study's face settings, on the model's
device; the worker's own copies stay on its CPU, unused. Only the worker's decode, tracking,
landmarks and alignment use its CPU, and no worker opens the GPU. A worker's request that
has not started when it is cancelled (`fgnet_video.study.worker_link`) or when the worker
is gone is dropped. A detection depends on its frame alone and a descriptor on its chip
alone, so the faces, ids and tables are those of the worker's own networks on that device.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future

import numpy as np

from fgnet_video.errors import error_line
from fgnet_video.face.device_detections import DeviceBatches, SharedFaceNetworks
from fgnet_video.options import FaceSettings
from fgnet_video.study.worker_link import WorkerLink
from fgnet_video.threads import wait_for

Reply = Callable[[int, object], None]  # (request number, answer) back to one worker


class FaceServer:
    """Serves the workers' "detect" and "describe" requests (module docstring); `submit`,
    `cancel` and `drop` are called by the main process's loop, answers go back through each
    request's `reply`, from the device thread. `worker` names one worker process for as
    long as it lives (one that replaces a dead one has another: request numbers restart)."""

    def __init__(self, settings: FaceSettings, device: str) -> None:
        self.settings, self.device = settings, device
        self._batches: DeviceBatches | None = None  # started on the first request
        self._detector = None
        self._read_chips: Callable[[np.ndarray], np.ndarray] | None = None
        self._requests: dict[tuple[int, int], Future] = {}  # (worker, number) -> unanswered

    def submit(self, worker: int, number: int, kind: str, payload: tuple, reply: Reply
               ) -> None:
        """Worker `worker`'s request `number`: ("detect", (image, small_faces)) or ("describe",
        (chips,)); its answer, or its error's line, goes to `reply`."""
        if self._batches is None:
            self._batches = DeviceBatches(self._run)
        if kind == "detect":
            image, small_faces = payload
            future = self._batches.submit(image, ("detect", bool(small_faces)))
        else:
            future = self._batches.submit(payload[0], ("describe",))
        self._requests[worker, number] = future
        future.add_done_callback(lambda done: self._answer(worker, number, done, reply))

    def cancel(self, worker: int, number: int) -> None:
        """`worker` no longer wants request `number` (dropped unless started)."""
        future = self._requests.pop((worker, number), None)
        if future is not None:
            future.cancel()

    def drop(self, worker: int) -> None:
        """Forget the requests of a worker that is gone."""
        for key in [key for key in list(self._requests) if key[0] == worker]:
            self.cancel(*key)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the device thread: waiting requests are cancelled, the batch at hand is
        waited for when `wait` (else by `join`)."""
        if self._batches is not None:
            self._batches.shutdown(wait=wait)

    def join(self) -> None:
        """Wait for the device thread to end, after `shutdown(wait=False)`."""
        if self._batches is not None:
            self._batches.join()

    def _answer(self, worker: int, number: int, done: Future, reply: Reply) -> None:
        if self._requests.get((worker, number)) is done:
            self._requests.pop((worker, number), None)
        if done.cancelled():
            return
        exc = done.exception()
        reply(number, done.result() if exc is None else error_line(exc))

    def _run(self, kind: Hashable, items: list) -> list:
        """One batch of the device thread: detections of frames, or descriptors of the
        chips of several requests read together."""
        if kind[0] == "detect":
            if self._detector is None:
                from fgnet_video.face.detect import FaceDetector

                self._detector = FaceDetector.for_settings(self.settings, device=self.device)
            return self._detector.detect_many(items, kind[1])
        if self._read_chips is None:
            from fgnet_video.face.person import descriptor_reader

            self._read_chips = descriptor_reader(self.device)
        descriptors = self._read_chips(np.concatenate(items))
        return np.split(descriptors, np.cumsum([len(chips) for chips in items])[:-1])


class _RemoteDetections:
    """A worker's `DetectionPool` whose detections its main process runs (`FaceServer`)."""

    def __init__(self, link: WorkerLink) -> None:
        self._link = link
        self._unanswered: set[Future] = set()
        self.started: Future = Future()
        self.started.set_result(None)

    def submit(self, image: np.ndarray, small_faces: bool) -> Future:
        future = self._link.request("detect", np.ascontiguousarray(image), small_faces)
        self._unanswered.add(future)
        future.add_done_callback(self._unanswered.discard)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        """Cancel what is unanswered (the main process drops what it has not started)."""
        for future in list(self._unanswered) if cancel_futures else []:
            future.cancel()


def shared_face_networks(link: WorkerLink, device: str) -> SharedFaceNetworks:
    """A worker's view of its main process's `FaceServer` on `device`, over `link`."""
    def read_chips(chips: np.ndarray) -> np.ndarray:
        if not len(chips):
            return np.zeros((0, 128))
        return wait_for(link.request("describe", chips))

    return SharedFaceNetworks(device, lambda: _RemoteDetections(link), read_chips)
