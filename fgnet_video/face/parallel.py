"""The face stage of one recording with its detections run ahead, with exactly the faces of
`FacePipeline`: by the HOG detector in several processes (`--face-workers N`, N >= 2), or by
the CNN detector in batches on the model's device (`fgnet_video.face.device_detections`).

Tracking is sequential by nature (each frame's landmarks are fitted from the previous
frame's), so it runs in one thread, ahead of the calling thread, which aligns the tracked
faces of earlier frames (`FacePipeline.locate`, then `FacePipeline.align`: alignment is
OpenCV work that overlaps with tracking); what tracking mostly waits for, the detector
(three quarters of the face stage's CPU time on a 720p clip with small faces searched for),
runs ahead in N worker processes. Frames are read 2 x N x `detect_every` + 1 ahead (at most
LOOK_AHEAD_BYTES of frames, but at least `detect_every` + 1: 110 MB of 720p for N = 2), so
each worker has a keyframe to
detect while the tracker, faster than a detection, goes on; before each frame is tracked,
the detections the tracker will ask for (`FaceTracker.upcoming`: its keyframes, or every
frame while no face is tracked), among the frames already read, are sent to the workers
with the detector passes they will need. When the tracker asks, the answer is ready or
being computed (a worker's not yet started is taken back and run in the tracking thread); a
detection it asks for unexpectedly (a failed tracking check) runs in the tracking thread,
as do those asked for before the first worker has started (spawning takes about a second).
With the CNN, every detection runs in the device's thread (the tracker only waits, and gives
the wait up when the run stops: `close`), or, in a worker process of a study (`--jobs`),
in its main process on the model's device, batched with the other recordings' detections
(`SharedFaceNetworks`, `fgnet_video.study.face_server`), and so do the person descriptors.
dlib's detectors are deterministic and a detection depends on its frame
alone, so where it runs changes no box: the faces, ids and tables are identical for any
number of workers (tested).

Workers are spawned (never forked from a process with running threads) once and kept for
the next clip (`reset`), so a study of many short clips pays for their start once; when an
analysis is interrupted or fails, or at `close`, what they have not started is dropped and
they exit after the detection at hand (killing them instead could leave a frame half-sent,
and the process hanging at its exit), and they stop by themselves if their parent dies.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from fgnet_video.errors import signal_received
from fgnet_video.face import detect_worker
from fgnet_video.face.detect import Detection, FaceDetector, Region, crop, shifted
from fgnet_video.face.device_detections import (
    DetectionPool,
    DeviceDetections,
    SharedFaceNetworks,
    detection_batch,
)
from fgnet_video.face.pipeline import Face, FacePipeline
from fgnet_video.media.video import Frame
from fgnet_video.options import FaceSettings
from fgnet_video.threads import background, wait_for

LOOK_AHEAD_BYTES = 256 * 2**20  # at most this much of decoded frames is read ahead
TRACKED_QUEUE = 8  # frames tracked ahead of their alignment
NO_FRAME = 1 << 62  # past every frame: forgetting the detections before it forgets them all


class _PrefetchedDetector:
    """The tracker's detector: answers from the workers' detections of the frame being
    tracked (`current`), else runs `local`, or, while `device` is set (the CNN's thread),
    asks it. A wait gives up (StageStopped, `wait_for`) once the tracking stage's consumer
    has gone: an interrupted run must not wait for a detection nobody will use (the CNN's
    small-face pass on a large frame takes tens of seconds on a CPU)."""

    def __init__(self, local: FaceDetector):
        self.local = local
        self.current = 0
        self.pending: dict[tuple[int, bool], Future] = {}
        self.device: DetectionPool | None = None

    def __call__(self, image: np.ndarray, small_faces: bool = True) -> list[Detection]:
        future = self.pending.pop((self.current, small_faces), None)
        # a worker's detection not started yet is taken back (the tracking thread runs it
        # at once); the device's stays in its queue, where it is ahead of later requests
        if future is not None and (self.device is not None or not future.cancel()):
            return wait_for(future)
        if self.device is not None:  # in the device's thread: a wait that can be given up
            return wait_for(self.device.submit(image, small_faces))
        return self.local(image, small_faces=small_faces)

    def in_region(self, image: np.ndarray, region: Region, small_faces: bool = True
                  ) -> list[Detection]:
        """`FaceDetector.in_region`, in the device's thread when one is set (never a
        detection prepared ahead: those are of whole frames)."""
        if self.device is None:
            return self.local.in_region(image, region, small_faces)
        return shifted(wait_for(self.device.submit(crop(image, region), small_faces)), region)

    @property
    def small_face_side(self) -> float:
        return self.local.small_face_side

    @property
    def local_redetection(self) -> bool:
        return self.local.local_redetection

    def forget_before(self, frame: int) -> None:
        """Drop the detections of frames already tracked (asked for, then not needed)."""
        for key in [key for key in self.pending if key[0] < frame]:
            self.pending.pop(key).cancel()


class _WorkerDetections:
    """HOG detections in `workers` spawned processes (`detect_worker`), a `DetectionPool`;
    `started` is done once one of them is up."""

    def __init__(self, settings: FaceSettings, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(workers, mp_context=context,
                                         initializer=detect_worker.start,
                                         initargs=(settings, os.getpid()))
        self.started = self._pool.submit(detect_worker.ready)

    def submit(self, image: np.ndarray, small_faces: bool) -> Future:
        return self._pool.submit(detect_worker.detect, image, small_faces)

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class ParallelFacePipeline:
    """A `FacePipeline` whose detections run ahead (module docstring): in `workers`
    processes for the HOG detector, batched on `device` for the CNN (or by `shared`).
    `stream(frames)` yields (frame, faces) in order; `process(frame)` is the one-frame form
    (no look-ahead, nothing in parallel, the detector of this process)."""

    def __init__(self, settings: FaceSettings, workers: int, device: str = "cpu",
                 shared: SharedFaceNetworks | None = None):
        """`workers` HOG detection processes beside the calling thread (which tracks), or
        with the CNN detector one thread running its batches; the networks run on
        `device`, or, given `shared`, CNN detections and descriptors run there (this
        process's own networks then stay on the CPU)."""
        self.shared = shared
        if shared is not None:
            device = shared.device
        self.pipeline = FacePipeline(settings, device=device, shared=shared)
        self.on_device = self.pipeline.tracker.detector.kind == "cnn"
        # The CNN's frames in one batch on its device (`detection_batch`: one on a CPU).
        self.device_batch = detection_batch(device)
        # While no face is tracked every frame is searched, until a face is found and only
        # keyframes are: detections prepared further ahead than this would mostly be
        # wasted. One per worker process; on a GPU a batch (cheap there), on a CPU the next
        # frame only (a CNN search costs 0.2-2.5 s there).
        self.search_ahead = self.device_batch if self.on_device else workers
        if workers < 2 and not self.on_device:
            raise ValueError(f"a parallel face stage needs 2 or more workers, got {workers}")
        self.workers = workers
        tracker = self.pipeline.tracker
        self._detector = _PrefetchedDetector(tracker.detector)
        tracker.detector = self._detector
        self._pool: DetectionPool | None = None

    def reset(self) -> None:
        """Start a new clip; the detection processes stay up for it."""
        self.pipeline.reset()
        self._detector.forget_before(NO_FRAME)
        self._detector.current = 0

    def close(self) -> None:
        """Stop the detections: what has not started is dropped; the worker processes exit
        after the detection at hand (under a second), and the CNN's thread after its batch
        at hand, which is waited for, but not after a signal (`errors.signal_received`: a
        CNN batch can take tens of seconds on a CPU; the CLI then leaves at once); shared
        networks' requests are cancelled (their process drops what it has not started). A
        later `stream` starts new ones."""
        self._detector.forget_before(NO_FRAME)
        if self._pool is not None:
            self._pool.shutdown(wait=not (self.on_device and signal_received()),
                                cancel_futures=True)
            self._pool = None

    def _detections(self) -> DetectionPool:
        """Where the detections run (started on first use, then kept across clips)."""
        if self._pool is None:
            if not self.on_device:
                self._pool = _WorkerDetections(self.pipeline.settings, self.workers)
            elif self.shared is not None:
                self._pool = self.shared.detections()
            else:
                self._pool = DeviceDetections(self._detector.local, self.device_batch)
        return self._pool

    def look_ahead(self, frame_bytes: int) -> int:
        """How many frames to read ahead, within LOOK_AHEAD_BYTES of frames and at least
        detect_every + 1: with worker processes 2 x workers x detect_every + 1, so that
        every worker has a keyframe to detect while the tracker, faster than a detection,
        goes on (the tracker covers about 20 frames of 720p in one small-face detection's
        time); on the device a batch of keyframes (`detection_batch`), but at least 2, so
        that on a CPU the next keyframe waits while one is detected."""
        every = self.pipeline.settings.detect_every
        fits = LOOK_AHEAD_BYTES // max(frame_bytes, 1)
        wanted = max(2, self.device_batch) if self.on_device else 2 * self.workers
        return max(every + 1, min(wanted * every + 1, fits))

    def process(self, frame: Frame) -> list[Face]:
        return self.pipeline.align(frame, self._locate(frame))

    def _locate(self, frame: Frame) -> list:
        """`FacePipeline.locate` of the next frame, the detector told which frame it is."""
        self._detector.current = self.pipeline.tracker.frames_seen
        return self.pipeline.locate(frame)

    def stream(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, list[Face]]]:
        """(frame, faces) in order: tracking (with the detections run ahead) in a thread of
        its own, alignment in the calling thread, so the two overlap."""
        located = background(self._located(frames), maxsize=TRACKED_QUEUE, name="tracking")
        try:
            for frame, faces in located:
                yield frame, self.pipeline.align(frame, faces)
        finally:
            located.close()

    def _located(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, list]]:
        """(frame, `FacePipeline.locate`'s faces) in order, the detections run ahead in the
        workers. The workers stay up when the clip is done (the next clip reuses them);
        a clip stopped early (a failure, an interrupt) stops them."""
        pool = self._detections()
        started = pool.started  # until then, the tracker detects alone
        self._detector.device = pool if self.on_device else None
        source = iter(frames)
        ahead: deque[Frame] = deque()
        tracker = self.pipeline.tracker
        look_ahead = 1
        finished = False
        try:
            while True:
                while len(ahead) < look_ahead:
                    frame = next(source, None)
                    if frame is None:
                        break
                    ahead.append(frame)
                    look_ahead = self.look_ahead(frame.image.nbytes)
                if not ahead:
                    finished = True
                    return
                first = tracker.frames_seen  # the tracker's number for ahead[0]
                upcoming = tracker.upcoming(len(ahead)) if started.done() else []
                if tracker.searching:  # a face found changes the schedule: look less ahead
                    upcoming = upcoming[:self.search_ahead]
                for number, small_faces in upcoming:
                    key = (number, small_faces)
                    if key not in self._detector.pending:
                        image = ahead[number - first].image
                        self._detector.pending[key] = pool.submit(image, small_faces)
                frame = ahead.popleft()
                faces = self._locate(frame)
                self._detector.forget_before(tracker.frames_seen)
                yield frame, faces
        finally:
            self._detector.device = None
            if finished:
                self._detector.forget_before(NO_FRAME)
            else:
                self.close()


