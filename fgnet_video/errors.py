"""Errors and warnings a user can cause: reported as one line on stderr, never a traceback."""

import signal
import sys
import threading
import warnings


class UserError(Exception):
    """A problem with the user's input (file, option, checkpoint); its message is one line.
    `exit_code` is the command's exit status for it."""

    exit_code = 1


class OutputClash(UserError):
    """An output that would replace an input, another output or a non-regular file, or
    that leaves the output folder (`fgnet_video.analysis.guard`): a refused plan."""

    exit_code = 2


def error_line(exc: BaseException) -> str:
    """One line describing `exc`: a user error's (or OS error's) own message, any other
    error's type and first message line (it is a bug or an unexpected state)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(exc, (UserError, OSError)):
        return line or type(exc).__name__
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def warning_line(message: Warning | str, category: type[Warning]) -> str:
    """The one line a warning is reported as: its message's first line, without a leading
    'fgnet-video: ' (the reporter adds its own prefix)."""
    text = str(message).strip()
    line = text.splitlines()[0] if text else category.__name__
    return line.removeprefix("fgnet-video: ")


def warnings_as_lines() -> None:
    """From now on, show every Python warning as one line on stderr,
    `fgnet-video: warning: <message>`, once per distinct message: no file name, line number
    or source line (the CLI's rule; `--verbose` keeps Python's own format)."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = warning_line(message, category)
        if text in seen:
            return
        seen.add(text)
        try:
            print(f"fgnet-video: warning: {text}", file=file or sys.stderr)
        except OSError:  # stderr closed: nothing to tell
            pass

    show.one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def warnings_shown_as_lines() -> bool:
    """Whether `warnings_as_lines` is in force in this process (worker processes follow
    their parent)."""
    return getattr(warnings.showwarning, "one_line", False)


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM); like KeyboardInterrupt, it unwinds every
    `finally` and `except BaseException` on its way out, so partial outputs are removed."""


def interruption_behind(exc: BaseException) -> BaseException | None:
    """The interrupt (KeyboardInterrupt, Terminated: not an Exception) that `exc` was raised
    from or while handling, if any. A signal that arrives while an extension module
    initialises comes back as that module's ImportError ("initialization failed"): the
    interrupt, not the import, is what happened."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if not isinstance(cause, Exception):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


_signalled = threading.Event()  # SIGTERM or SIGINT arrived (raise_on_sigterm's handlers)


def signal_received() -> bool:
    """Whether this process was told to stop by SIGTERM or Ctrl-C (after `raise_on_sigterm`):
    what is left to do then must not wait for work nobody will use."""
    return _signalled.is_set()


def raise_on_sigterm() -> None:
    """From now on, SIGTERM raises Terminated and SIGINT KeyboardInterrupt in the main
    thread, both noted for `signal_received` (call from the main thread)."""
    def stop(signum, frame) -> None:
        _signalled.set()
        raise Terminated()

    def interrupt(signum, frame) -> None:
        _signalled.set()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)
