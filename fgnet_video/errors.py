"""Errors a user can cause: reported as one line on stderr, never a traceback."""


class UserError(Exception):
    """A problem with the user's input (file, option, checkpoint); its message is one line."""
