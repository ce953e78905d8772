"""Work batched on the device: the CNN detector's executor in the look-ahead face stage
(`fgnet_video.face.parallel`), in place of the HOG detector's worker processes, and the
face networks a study's main process runs for its worker processes
(`fgnet_video.study.face_server`).

One thread owns the device work (`DeviceBatches`). Requests (item, kind) queue up, e.g. (frame,
small_faces) as the face stage reads frames ahead; each time the thread is free it takes
every waiting request (up to `batch`) of the kind of the first one (a detection with or
without the small-face pass, descriptors) and runs them as one batch: `DeviceDetections`
gives frames of one size to the network together (`FaceDetector.detect_many`). Each
request's answer is a `concurrent.futures.Future`, so the tracker waits on it, or cancels it
while it still waits in the queue, exactly as with worker processes; a detection depends on
its frame alone, so batching changes no box.

`DetectionPool` is what a face stage's detections run ahead in (these threads, HOG's worker
processes, a study's main process), and `SharedFaceNetworks` the networks another process
runs for a face stage (`fgnet_video.face.parallel`, `fgnet_video.face.pipeline`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fgnet_video.face.detect import FaceDetector

DEVICE_BATCH = 16  # requests at most in one batch (frames of detections)


def detection_batch(device: str) -> int:
    """Frames in one batch of CNN detections on `device`: DEVICE_BATCH on a GPU, where
    batches are what makes the network fast; 1 on a CPU, where a batch buys nothing (16
    keyframes of a real 720p clip, both passes: 3.42-3.50 s one at a time, 3.71-3.76 s as
    one batch, `benchmarks/detection_batches.py`) and holds each of its frames back until
    its last is detected, so that the frames come out in bursts of a batch."""
    return 1 if str(device).startswith("cpu") else DEVICE_BATCH


class DetectionPool(Protocol):
    """Where detections run ahead of the tracker: `submit(image, small_faces)` -> Future of
    the detections (`FaceDetector.__call__`); `started` is done once the pool can detect;
    `shutdown` drops what waits (`cancel_futures`) and stops it."""

    started: Future

    def submit(self, image: np.ndarray, small_faces: bool) -> Future: ...

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None: ...


@dataclass(frozen=True)
class SharedFaceNetworks:
    """The face stage's networks run by another process (a study's main process, beside
    the model): `device` is where they run, `detections()` a new `DetectionPool` of CNN
    detections, `read_chips` the descriptors of face chips (`FaceEmbedder`)."""

    device: str
    detections: Callable[[], DetectionPool]
    read_chips: Callable[[np.ndarray], np.ndarray]


_running = 0  # batches being computed now, in every DeviceBatches of this process
_running_lock = threading.Lock()


def busy() -> bool:
    """Whether a batch is being computed now. An interrupted run does not wait for one (a
    small-face pass on a large frame takes tens of seconds on a CPU), but while one runs the
    interpreter cannot end normally (torch's threads would be torn down under it): the CLI
    then leaves at once (`fgnet_video.cli`), as the thread holds no files."""
    return _running > 0


class DeviceBatches:
    """`submit(item, kind)` -> Future of the item's entry of `run(kind, items)`, run in
    batches of one kind in a thread of its own (module docstring); `shutdown` stops it.
    `run` returns one answer per item, in order."""

    def __init__(self, run: Callable[[Hashable, list], list], batch: int = DEVICE_BATCH
                 ) -> None:
        self.run, self.batch = run, batch
        self.started: Future = Future()  # ready at once (worker processes take a while)
        self.started.set_result(None)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._held: list = []  # the next batch's first request (or the stop), when taken
        self._cancel_rest = False  # set by shutdown(cancel_futures=True)
        self._thread = threading.Thread(target=self._serve, name="device-batches",
                                        daemon=True)
        self._thread.start()

    def submit(self, item: Any, kind: Hashable) -> Future:
        future: Future = Future()
        self._requests.put((item, kind, future))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        """Stop the thread after the batch at hand (joined when `wait`); what waits is
        cancelled first (`cancel_futures`: also a request the thread has taken and holds for
        its next batch), or run before it stops."""
        self._cancel_rest = cancel_futures
        while cancel_futures:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                request[2].cancel()
        self._requests.put(None)
        if wait:
            self.join()

    def join(self) -> None:
        """Wait for the thread to end (after `shutdown`)."""
        self._thread.join()

    def _take(self) -> list[tuple[Any, Hashable, Future]] | None:
        """The next batch: the first waiting request and those behind it of the same kind
        (up to `batch`); None when told to stop. The first request of another kind is held
        back, and is the first of the next batch (so requests keep their order)."""
        first = self._held.pop() if self._held else self._requests.get()
        if first is None:
            return None
        taken = [first]
        while len(taken) < self.batch:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            if request is None or request[1] != first[1]:
                self._held.append(request)  # a stop stays a stop
                break
            taken.append(request)
        return taken

    def _serve(self) -> None:
        while (taken := self._take()) is not None:
            if self._cancel_rest:  # taken before `shutdown` drained the queue
                for _, _, future in taken:
                    future.cancel()
                continue
            live = [(item, future) for item, _, future in taken
                    if future.set_running_or_notify_cancel()]
            if live:
                self._answer(taken[0][1], live)

    def _answer(self, kind: Hashable, live: list[tuple[Any, Future]]) -> None:
        """Run the requests `live` in one batch and set their futures; when a batch of
        several fails, each half is run again the same way, so a request fails only when it
        fails alone (a batch mixes recordings: one frame too large for the device fails
        only its own), at the cost of about 2 log2(n) batches for one such frame in n, not
        n."""
        try:
            answers = self._batch(kind, [item for item, _ in live])
            if len(answers) != len(live):
                raise RuntimeError(f"{len(answers)} answers to {len(live)} requests")
        except BaseException as exc:  # the waiting requester raises it
            if len(live) > 1 and isinstance(exc, Exception):
                half = len(live) // 2
                self._answer(kind, live[:half])
                self._answer(kind, live[half:])
                return
            for _, future in live:
                future.set_exception(exc)
            return
        for (_, future), answer in zip(live, answers, strict=True):
            future.set_result(answer)

    def _batch(self, kind: Hashable, items: list) -> list:
        global _running
        with _running_lock:
            _running += 1
        try:
            return self.run(kind, items)
        finally:
            with _running_lock:
                _running -= 1


class DeviceDetections(DeviceBatches):
    """`submit(image, small_faces)` -> Future of `detector(image, small_faces)`, the frames
    waiting with the same `small_faces` detected in one batch (`detect_many`)."""

    def __init__(self, detector: FaceDetector, batch: int) -> None:
        self.detector = detector
        super().__init__(self._detect, batch)

    def _detect(self, small_faces: Hashable, images: list[np.ndarray]) -> list:
        return self.detector.detect_many(images, bool(small_faces))
