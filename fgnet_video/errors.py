"""Errors a user can cause: reported as one line on stderr, never a traceback."""


class UserError(Exception):
    """A problem with the user's input (file, option, checkpoint); its message is one line."""


def error_line(exc: BaseException) -> str:
    """One line describing `exc`: a user error's (or OS error's) own message, any other
    error's type and first message line (it is a bug or an unexpected state)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(exc, (UserError, OSError)):
        return line or type(exc).__name__
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
