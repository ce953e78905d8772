"""Pipeline stages in background threads (fgnet_video.threads): a stop reaches down a chain
of stages at once, without waiting for the innermost one's next item."""

from __future__ import annotations

import threading
import time

from fgnet_video.threads import background, stop_requested


def test_closing_a_chain_of_stages_stops_a_wait_deep_inside_it():
    """The outer stage reads an inner stage whose producer waits for something that takes
    30 s (a detection); closing the outer stage ends both threads in well under a second:
    the outer one gives up its wait on the inner stage, and the inner one sees
    stop_requested() in its wait."""
    released = threading.Event()
    gave_up = []

    def slow():
        yield 0
        for _ in range(300):  # a 30 s wait that looks at stop_requested()
            if stop_requested():
                gave_up.append(True)
                return
            time.sleep(0.1)
        released.set()
        yield 1

    def outer():
        yield from background(slow(), maxsize=1, name="inner")

    stages = background(outer(), maxsize=1, name="outer")
    assert next(stages) == 0
    started = time.monotonic()
    stages.close()
    assert time.monotonic() - started < 1.0
    assert gave_up == [True] and not released.is_set()
    assert not [t for t in threading.enumerate() if t.name in ("inner", "outer")]
