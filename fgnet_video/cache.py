"""fgnet-video's cache folder and the file lock that guards work done in it.

The cache holds the known weights (`fgnet_video.weights.store`) and the compiled kernels
(`fgnet_video.kernels.build`, under `kernels/`). It is $FGNET_VIDEO_HOME when that is set,
else $XDG_CACHE_HOME/fgnet-video, else ~/.cache/fgnet-video.

This module imports only the standard library (and fgnet_video.errors), so the kernels can use
it without pulling in the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fgnet_video.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

HOME_ENV = "FGNET_VIDEO_HOME"


def cache_dir() -> Path:
    """$FGNET_VIDEO_HOME, else $XDG_CACHE_HOME/fgnet-video, else ~/.cache/fgnet-video
    (read on every call; the folder is not created)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fgnet-video"


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file `path` (created, with its parent folders,
    when missing) for the duration of the block: processes on one machine that lock the same
    path run their blocks one after another. POSIX flock, so the OS releases the lock when its
    holder dies and a crashed process never blocks later ones. Where fcntl is missing
    (Windows) this is a no-op.

    Several users can share one cache: the lock file is created like any new file (0o666 less
    the umask, so group-writable under umask 002), and a user who may not write it (another
    user's lock file under umask 022) opens it read-only, which flock accepts just the same.
    A lock file that can be neither opened nor created is a UserError saying what to do."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    descriptor = _open_lock_file(path)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _open_lock_file(path: Path) -> int:
    """A descriptor of the lock file: read-write (created when missing), else read-only."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        pass
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise UserError(
            f"{path}: cannot open the lock file ({exc.strerror}); in a cache shared by several "
            "users, make the folder group-writable (chmod g+ws) and use umask 002, or set "
            f"{HOME_ENV} to a folder of your own") from None
