"""One way to run a pipeline stage in a background thread: `background(items)`.

    for frame in background(decode(path), maxsize=8, name="decode"):
        ...

The producer thread iterates `items` and puts each item into a bounded queue (so it runs
at most `maxsize` items ahead and memory stays bounded); the consumer gets them in order.
An exception raised by `items` reaches the consumer after the items produced before it.
When the consumer stops early (break, exception, or `close()` of the returned generator),
the producer stops at its next item, `items` is closed (its `finally` blocks run, in the
producer thread) and the thread is joined: no thread outlives its consumer. Stages chain:
`items` may itself read from another `background` generator, and a stop reaches down the
chain without waiting for the next item: a producer waiting on its own inner stage gives
up (StageStopped) within POLL_SECONDS once its consumer has gone, and any other long wait
in a producer can do the same by checking `stop_requested()` (`wait_for` does, for a
`concurrent.futures.Future`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin before 3.11
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.1


class _Raised:
    """Queue item: the producer stopped on this exception."""

    def __init__(self, error: BaseException):
        self.error = error


_END = object()
_stage = threading.local()  # in a producer thread: `stop`, set when its consumer has gone


class StageStopped(Exception):
    """Raised in a producer thread whose consumer has gone, to unwind what it waits on."""


def stop_requested() -> bool:
    """Whether this thread produces a `background` stage whose consumer has gone (a long
    wait in it should give up: nobody takes what it would produce)."""
    stop = getattr(_stage, "stop", None)
    return stop is not None and stop.is_set()


def wait_for(future: Future) -> object:
    """The result of `future`, waited for in steps of POLL_SECONDS; in a producer thread
    whose consumer has gone, StageStopped instead (nobody would take what it produces)."""
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except FutureTimeout:
            if stop_requested():
                raise StageStopped() from None


def put_unless_stopped(target: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` into a bounded queue, waiting while it is full; False (not put) once `stop`
    is set, so a producer never blocks forever on a consumer that went away."""
    while not stop.is_set():
        try:
            target.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _produce(items: Iterable[T], out: queue.Queue, stop: threading.Event) -> None:
    _stage.stop = stop
    iterator = iter(items)
    try:
        for item in iterator:
            if not put_unless_stopped(out, item, stop):
                return
        put_unless_stopped(out, _END, stop)
    except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
        put_unless_stopped(out, _Raised(exc), stop)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def background(items: Iterable[T], *, maxsize: int, name: str) -> Iterator[T]:
    """The items of `items`, produced in a daemon thread called `name` at most `maxsize`
    ahead of the consumer (see the module docstring for errors and early stops)."""
    out: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(items, out, stop), name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = out.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if stop_requested():  # this thread's own consumer has gone: stop too
                    raise StageStopped() from None
                continue
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
