"""What a path is, for messages and checks made before any work: the kind of a file that is
not a regular one, whether a path is a place to write a file, and what makes a text
unusable as a file name."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def special_file_kind(mode: int) -> str:
    """What a file that is not a regular file is ('a folder', 'a FIFO (named pipe)', 'a
    device', ...), from its `st_mode`."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def write_target_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is no place to write a file (a link, a folder, a device, a FIFO, or not
    examinable), or None: it is absent, or a regular file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be written ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a link; give the path of a regular file as output"
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        return f"is {kind}; outputs are written as new regular files"
    return None


MAX_NAME_BYTES = 200  # a file name part: 255 bytes at most, less our suffixes and prefixes


def name_problem(text: str) -> str | None:
    """What makes `text` unusable in a file name (a control character such as a NUL or a
    line break, a part longer than MAX_NAME_BYTES), or None."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "holds a control character (a NUL byte or a line break?)"
    longest = max((len(part.encode()) for part in Path(text).parts), default=0)
    if longest > MAX_NAME_BYTES:
        return f"has a part of {longest} bytes (at most {MAX_NAME_BYTES} make a file name)"
    return None
