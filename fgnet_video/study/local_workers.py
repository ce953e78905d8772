"""`analyze --jobs N`: N recordings at once, in N worker processes, all feeding one model.

    main process (`run_parallel`'s loop, one thread, and the face server's device thread):
        gives each idle worker the next job (a `fgnet_video.study.plan.Job`) over its pipe;
        takes the workers' faces to the `ModelServer` and sends their scores back;
        reports each finished job's outcome (`on_end`); notices a worker that died;
        runs the workers' face networks on the model's device (`fgnet_video.study.face_server`)
    worker k: `fgnet_video.study.jobs.process_job(job, ModelClient, plan)`, one job after another

Workers are spawned processes, each with its own duplex pipe; the main process keeps no
copy of a worker's end, so a worker's death reads as end-of-file on its pipe, and nothing a
dying worker half-wrote can block the others (`fgnet_video.study.model_server`). A worker that
dies (killed, out of memory) fails the recording it held with one line, also kept beside
its outputs for `fgnet-video status`; it is replaced while jobs are queued and the run goes
on. A worker that dies before it said it started its job gives the job back to the queue;
when MAX_LOST_BEFORE_START workers in a row die so (a broken environment), the run stops
with one line.

Signals: an interrupt of the main process (SIGINT, or SIGTERM with the CLI's handler) stops
the workers (their pipes closed, so none stays blocked sending, and SIGTERM: a busy worker
unwinds its job, which removes its partial outputs; SIGKILL after WORKER_STOP_SECONDS, whose
partials the main process then removes) and leaves
queued jobs unstarted. A worker ignores SIGINT (the main process decides) and stops by
itself when the main process dies.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from fgnet_video.analysis.commit import remove_stale_partials
from fgnet_video.analysis.recording import face_stages_kept
from fgnet_video.errors import (
    Terminated,
    UserError,
    error_line,
    signal_received,
    warnings_as_lines,
    warnings_shown_as_lines,
)
from fgnet_video.study.face_server import FaceServer, shared_face_networks
from fgnet_video.study.jobs import OnEnd, StudySummary, failed, process_job
from fgnet_video.study.model_server import ModelClient, ModelServer
from fgnet_video.study.plan import Job, Plan
from fgnet_video.study.worker_link import WorkerLink
from fgnet_video.workers import WORKER_STOP_SECONDS, follow_parent, stop_processes

if TYPE_CHECKING:
    from fgnet_video.inference.engine import InferenceEngine

# The workers' face networks run in the main process (`fgnet_video.study.face_server`): on a
# GPU so that one device batches every recording's detections; on a 2-core CPU it was also
# 1.42x faster than each worker running its own, with the CNN (`benchmarks/study_shared_faces.py`,
# which turns it off for its baseline); with HOG, whose detections stay in the workers and
# only the descriptors go, it was even (0.99x). Not measured on many cores.
SHARED_FACE_NETWORKS = True
MAX_LOST_BEFORE_START = 3  # workers in a row lost before they start a job: the run stops


@dataclass
class _Worker:
    """A worker process, the main process's end of its pipe, and the job it holds."""

    slot: int
    process: Any
    connection: Any
    serial: int  # this process among all the study's workers (its face server requests')
    job: Job | None = None
    started: bool = False  # the worker has said it started on `job`
    # the loop and the face server's device thread both send
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: object) -> None:
        """Send `message`; a worker that is gone is noticed by the loop, not here."""
        with self.lock:
            try:
                self.connection.send(message)
            except OSError:
                pass

    def answer(self, number: int, answer: object) -> None:
        """The answer to the worker's request `number` (`fgnet_video.study.worker_link`);
        one that cannot be sent (pickled) is answered by its error's line."""
        try:
            self.send(("answer", number, answer))
        except Exception as exc:  # noqa: BLE001 - pickling fails before anything is sent
            self.send(("answer", number, error_line(exc)))

    def receive(self) -> tuple | None:
        """The worker's next message, or None when it is gone (or sent one cut off)."""
        try:
            return self.connection.recv()
        except Exception:  # noqa: BLE001 - end of file, or a message that cannot be read
            return None

    def close(self) -> None:
        """Close the pipe (not while the device thread sends on it)."""
        with self.lock:
            self.connection.close()


def run_parallel(plan: Plan, engine: InferenceEngine, n_jobs: int, on_end: OnEnd
                 ) -> StudySummary:
    """The jobs of `plan` in `n_jobs` worker processes fed by `engine` (module docstring)."""
    summary = StudySummary()
    server = ModelServer(engine, n_jobs)
    faces = FaceServer(plan.options.face, engine.describe().device)
    face_device = faces.device if SHARED_FACE_NETWORKS else None  # None: workers' own
    context = multiprocessing.get_context("spawn")
    queued = deque(plan.jobs)
    serials = itertools.count()

    def start(slot: int) -> _Worker:
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_worker_main, name=f"fgnet-video-job-{slot}",
            args=(theirs, plan, (*server.client_args(), face_device), warnings_shown_as_lines(),
                  os.getpid()))
        process.start()
        theirs.close()  # the worker's end lives in the worker only
        return _Worker(slot, process, ours, next(serials))

    def remove_partials(job: Job) -> None:
        """Remove what a worker that is gone left of `job`'s outputs."""
        outputs = plan.outputs(job)
        remove_stale_partials([*outputs.finals(), outputs.failure_record])

    def finish(worker: _Worker, outcome) -> None:
        summary.record(worker.job, outcome)
        on_end(worker.job, outcome)
        worker.job = None

    def lost(worker: _Worker) -> None:
        """A busy worker is gone: its recording fails (or, not started yet, goes back to
        the queue) and the partial outputs it left are removed; a new worker takes its
        place while jobs are queued."""
        nonlocal lost_before_start
        server.drop(worker.slot)
        faces.drop(worker.serial)
        how = _how_stopped(worker.process)
        worker.close()
        remove_partials(worker.job)
        if worker.started:
            finish(worker, failed(worker.job, plan, f"the worker process stopped ({how})"))
        else:
            queued.appendleft(worker.job)
            lost_before_start += 1
            if lost_before_start > MAX_LOST_BEFORE_START:
                raise UserError(f"the worker processes stop before starting a recording "
                                f"({how})")
        if queued:
            workers[worker.slot] = start(worker.slot)

    lost_before_start = 0
    workers = [start(slot) for slot in range(n_jobs)]
    try:
        while True:
            for worker in workers:
                if worker.job is None and queued:
                    worker.job, worker.started = queued.popleft(), False
                    worker.send(worker.job)
            busy = [worker for worker in workers if worker.job is not None]
            if not busy:
                break
            for worker in _ready(busy, server.wait_seconds()):
                message = worker.receive()
                if message is None:
                    lost(worker)
                elif message[0] == "started":
                    worker.started, lost_before_start = True, 0
                elif message[0] == "faces":
                    server.add(worker.slot, *message[1:])
                elif message[0] in ("detect", "describe"):
                    faces.submit(worker.serial, message[1], message[0], message[2:],
                                 worker.answer)
                elif message[0] == "cancel":
                    faces.cancel(worker.serial, message[1])
                else:
                    finish(worker, message[1])
            if server.due({worker.slot for worker in workers if worker.job is not None}):
                for slot, number, answer in server.score():
                    workers[slot].answer(number, answer)
    except BaseException:
        faces.shutdown(wait=False)  # nothing more for the workers, who need no answer to stop
        try:
            _stop_workers(workers)
            for worker in workers:  # one killed after its grace period could not clean up
                if worker.job is not None:
                    remove_partials(worker.job)
        finally:
            if not signal_received():  # else the CLI leaves without waiting for the batch
                faces.join()
        raise
    faces.shutdown()
    for worker in workers:
        worker.send(None)
    for worker in workers:
        worker.process.join(WORKER_STOP_SECONDS)
    stop_processes([worker.process for worker in workers])  # any that did not end
    return summary


def _stop_workers(workers: list[_Worker]) -> None:
    """Stop the workers of an interrupted run: close their pipes first, so a worker thread
    blocked sending to this process (which reads no more: a large frame to detect on fills
    the pipe) fails and lets its job unwind, then `stop_processes` (SIGTERM, SIGKILL after
    WORKER_STOP_SECONDS). Without the close such a worker is killed, and the run takes
    that long to stop."""
    for worker in workers:
        worker.close()
    stop_processes([worker.process for worker in workers])


def _ready(busy: list[_Worker], timeout: float | None) -> list[_Worker]:
    """The busy workers with a message or gone (waiting at most `timeout` seconds)."""
    by_handle: dict[Any, _Worker] = {}
    for worker in busy:
        by_handle[worker.connection] = worker
        by_handle[worker.process.sentinel] = worker
    ready = wait(list(by_handle), timeout)
    return list({id(by_handle[h]): by_handle[h] for h in ready}.values())


def _how_stopped(process) -> str:
    """How a worker process that closed its pipe ended: its signal or exit status (one
    still running WORKER_STOP_SECONDS later is killed)."""
    process.join(WORKER_STOP_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
    code = process.exitcode
    if code in (-signal.SIGTERM, 143):
        how = "stopped by SIGTERM"
    elif code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
        if code == -signal.SIGKILL:
            how += ", e.g. for lack of memory"
    else:
        how = f"exit status {code}"
    return how


_busy = False  # a job is running in this worker (SIGTERM then unwinds it)


def _worker_sigterm(signum, frame) -> None:
    """SIGTERM in a worker: unwind the running job (its partials are removed on the way),
    or, when idle, exit at once."""
    if _busy:
        raise Terminated()
    os._exit(143)


def _worker_main(connection, plan: Plan, client_args: tuple, warning_lines: bool,
                 parent: int) -> None:
    """A worker process: stop on SIGTERM (not on SIGINT: the parent decides), follow the
    parent's warning style, stop when the parent dies; then analyse each job it is sent
    until None (or the parent's end of the pipe closes). One torch thread: the worker's own
    work is decoding and the face stage."""
    global _busy
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    if warning_lines:
        warnings_as_lines()
    follow_parent(parent)
    import torch

    torch.set_num_threads(1)
    link = WorkerLink(connection)
    *model_args, face_device = client_args
    model = ModelClient(link, *model_args, face_device and shared_face_networks(link, face_device))
    try:
        with face_stages_kept():  # one face stage for all the recordings of this worker
            while (job := link.next_message()) is not None:
                link.send(("started",))
                _busy = True
                outcome = process_job(job, model, plan)
                _busy = False
                link.send(("done", outcome))
    except Terminated:
        os._exit(143)  # a running job's partials were removed as it unwound
    except (EOFError, OSError):
        os._exit(1)  # the main process is gone
