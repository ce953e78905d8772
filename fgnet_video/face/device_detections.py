"""Detections batched on the device: the CNN detector's executor in the look-ahead face stage
(`fgnet_video.face.parallel`), in place of the HOG detector's worker processes.

One thread owns the detector's device work. Requests (frame, small_faces) queue up as the
face stage reads frames ahead; each time the thread is free it takes every waiting request
(up to `batch`, of one kind of pass: with or without the small-face pass) and runs them as
one batch (`FaceDetector.detect_many`: frames of one size go through the network
together). Each request's answer is a `concurrent.futures.Future`, so the tracker waits on
it, or cancels it while it still waits in the queue, exactly as with worker processes; a
detection depends on its frame alone, so batching changes no box.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np

from fgnet_video.face.detect import FaceDetector

DEVICE_BATCH = 16  # frames at most in one batch of detections

_running = 0  # batches being computed now, in every DeviceDetections of this process
_running_lock = threading.Lock()


def busy() -> bool:
    """Whether a batch is being computed now. An interrupted run does not wait for one (a
    small-face pass on a large frame takes tens of seconds on a CPU), but while one runs the
    interpreter cannot end normally (torch's threads would be torn down under it): the CLI
    then leaves at once (`fgnet_video.cli`), as the thread holds no files."""
    return _running > 0


class DeviceDetections:
    """`submit(image, small_faces)` -> Future of `detector(image, small_faces)`, run in
    batches in a thread of its own (module docstring); `shutdown` stops it."""

    def __init__(self, detector: FaceDetector, batch: int = DEVICE_BATCH) -> None:
        self.detector, self.batch = detector, batch
        self.started: Future = Future()  # ready at once (worker processes take a while)
        self.started.set_result(None)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="device-detections",
                                        daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray, small_faces: bool) -> Future:
        future: Future = Future()
        self._requests.put((image, small_faces, future))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        """Stop the thread after the batch at hand (joined when `wait`); what waits in the
        queue is cancelled first (`cancel_futures`), or run before it stops."""
        while cancel_futures:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[2].cancel()
        self._requests.put(None)
        if wait:
            self._thread.join()

    def _take(self) -> list[tuple[np.ndarray, bool, Future]] | None:
        """The next batch: the first waiting request and those behind it of the same kind
        (up to `batch`); None when told to stop."""
        first = self._requests.get()
        if first is None:
            return None
        taken = [first]
        while len(taken) < self.batch:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                break
            if item is None or item[1] != first[1]:
                self._requests.put(item)  # after the batch (a stop stays a stop)
                break
            taken.append(item)
        return taken

    def _serve(self) -> None:
        while (taken := self._take()) is not None:
            live = [(image, future) for image, _, future in taken
                    if future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                found = self._batch([image for image, _ in live], taken[0][1])
            except BaseException as exc:  # the waiting tracker raises it
                for _, future in live:
                    future.set_exception(exc)
                continue
            for (_, future), detections in zip(live, found, strict=True):
                future.set_result(detections)

    def _batch(self, images: list[np.ndarray], small_faces: bool) -> list:
        global _running
        with _running_lock:
            _running += 1
        try:
            return self.detector.detect_many(images, small_faces)
        finally:
            with _running_lock:
                _running -= 1
