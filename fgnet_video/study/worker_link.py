"""A study's worker process's end of its pipe to the main process, shared by the worker's
threads (`fgnet_video.study.local_workers`).

Requests go up as (kind, number, *payload) from any thread of the worker: "faces" (the
model's scores, `fgnet_video.study.model_server.ModelClient`), "detect" and "describe" (the
face networks, `fgnet_video.study.face_server`); the main process answers each with
("answer", number, answer), where an answer that is a string is the one line of an error.
`request` returns a Future of the answer; cancelling it while it is still unanswered sends
("cancel", number), so the main process drops the face networks' work if it has not started
it (the model's scores are computed anyway, and the answer ignored). One
thread receives everything: answers resolve their futures, any other message (a job, or
None: stop) waits for `next_message`, in order. When the main process is gone (end of file)
every unanswered request raises Terminated and `next_message` raises EOFError: the worker
stops as it does on SIGTERM; so it does when a message from it is cut off (`send`), or one
to it cannot be read.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, InvalidStateError
from multiprocessing.reduction import ForkingPickler
from typing import Any

from fgnet_video.errors import Terminated, UserError
from fgnet_video.threads import POLL_SECONDS

_GONE = object()  # in the message queue: the main process has closed the pipe


class WorkerLink:
    """The worker's end of its duplex `connection` (module docstring)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()  # guards _number, _pending, _gone
        self._number = 0
        self._pending: dict[int, Future] = {}
        self._gone = False
        self._broken = False  # a send was cut off: nothing more may be sent
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._receive, name="worker-link", daemon=True)
        self._thread.start()

    def send(self, message: object) -> None:
        """Send one message (OSError when the main process is gone). A send interrupted
        midway (SIGTERM raised in it) leaves half a message in the pipe, after which no
        other may follow (the main process would read one message's tail as the next's
        head): later sends raise OSError, and the main process reads this worker as gone."""
        with self._send_lock:
            if self._broken:
                raise OSError("a message to the main process was cut off")
            data = ForkingPickler.dumps(message)  # what cannot be pickled sends nothing
            try:
                self._connection.send_bytes(data)
            except BaseException:
                self._broken = True
                raise

    def request(self, kind: str, *payload: object) -> Future:
        """A Future of the main process's answer to (kind, payload) (module docstring)."""
        future: Future = Future()
        with self._lock:
            if self._gone:
                future.set_exception(Terminated())
                return future
            self._number += 1
            number = self._number
            self._pending[number] = future
        future.add_done_callback(lambda done: self._cancelled(number, done))
        try:
            self.send((kind, number, *payload))
        except OSError:
            self._fail_pending()
        return future

    def next_message(self) -> object:
        """The next message that is not an answer; EOFError once the main process is
        gone. Waits in steps, so a signal's handler runs meanwhile."""
        while True:
            try:
                message = self._messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if message is _GONE:
                self._messages.put(_GONE)  # for any later call too
                raise EOFError("the main process closed the pipe")
            return message

    def _cancelled(self, number: int, future: Future) -> None:
        if not future.cancelled():
            return
        with self._lock:
            if self._pending.pop(number, None) is None or self._gone:
                return
        try:
            self.send(("cancel", number))
        except OSError:
            pass  # the main process is gone: nothing to cancel

    def _receive(self) -> None:
        while True:
            try:
                message = self._connection.recv()
            except BaseException:  # noqa: BLE001 - end of file, or a message cut off
                break
            if isinstance(message, tuple) and message[:1] == ("answer",):
                self._answer(*message[1:])
            else:
                self._messages.put(message)
        self._fail_pending()
        self._messages.put(_GONE)

    def _answer(self, number: int, answer: object) -> None:
        with self._lock:
            future = self._pending.pop(number, None)
        if future is None:
            return  # cancelled meanwhile
        try:
            if isinstance(answer, str):
                future.set_exception(UserError(answer))
            else:
                future.set_result(answer)
        except InvalidStateError:
            pass  # cancelled between the two steps above

    def _fail_pending(self) -> None:
        """The main process is gone: every unanswered request raises Terminated."""
        with self._lock:
            self._gone = True
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            try:
                future.set_exception(Terminated())
            except InvalidStateError:
                pass
