"""Worker processes: stopping them for good, and workers that stop when their parent dies.

Used by the study run's workers (`fgnet_video.study.local_workers`) and the face stage's
detection workers (`fgnet_video.face.parallel`).
"""

from __future__ import annotations

import os
import signal
import threading
import time

# How long stopped workers get to clean up (remove partials; under a second, unless a worker
# is inside a long call that holds Python's lock, e.g. loading dlib's 68-point model from a
# cold disk). Shorter than the README's "SIGTERM stops the run within 5 seconds", which
# also counts the main process removing a killed worker's partials and its own exit.
WORKER_STOP_SECONDS = 3.0
PARENT_POLL_SECONDS = 0.5


def stop_processes(processes: list) -> None:
    """Ask every process to stop (SIGTERM) and kill those still running after
    WORKER_STOP_SECONDS."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def follow_parent(parent: int) -> None:
    """In a worker: start a daemon thread that, once the parent process `parent` is gone (it
    was killed), stops this worker as on SIGTERM, and for good if that has not happened
    within WORKER_STOP_SECONDS."""
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="watch-parent").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(WORKER_STOP_SECONDS)
    os._exit(143)
