"""Worker processes: stopping a pool for good, and workers that stop when their parent dies.

Used by the study run's model workers (`fgnet_video.batch`) and the face stage's detection
workers (`fgnet_video.face.parallel`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

WORKER_STOP_SECONDS = 5.0  # how long stopped workers get to clean up (remove partials)
PARENT_POLL_SECONDS = 0.5


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Ask every worker to stop (SIGTERM), kill those still running after
    WORKER_STOP_SECONDS, and drop the queue."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


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
