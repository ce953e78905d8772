"""Atomic file output: write to a hidden temporary name beside the target, rename when complete.

Every file written this way ends with the permissions any new file of the user gets, 0o666
less the umask (0644 under umask 022, 0664 under 002), whatever the writer did: safetensors,
for one, creates its files 0600, which locks other users out of a shared cache or results
folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HOST_TAG_CHARS = 16  # of the host name in a partial's name (file names hold 255 bytes)
HOST_TAG_ALPHABET = "A-Za-z0-9_-"  # a regex character class's contents


@functools.cache
def host_tag() -> str:
    """This machine in a partial's name: the host name's first HOST_TAG_CHARS characters,
    anything outside HOST_TAG_ALPHABET as '_'."""
    host = re.sub(f"[^{HOST_TAG_ALPHABET}]", "_", socket.gethostname())[:HOST_TAG_CHARS]
    return host or "localhost"


def owner_tag() -> str:
    """Who writes a partial: 'PID@HOST' (`host_tag`), so a process on shared storage tells
    its own partials from another machine's."""
    return f"{os.getpid()}@{host_tag()}"


def temporary_name(path: str | os.PathLike) -> Path:
    """The in-progress name of `path`: hidden, same folder and suffix (so tools still
    recognise it), with its writer's `owner_tag`."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial-{owner_tag()}{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed.

    The temporary file exists (empty) before the block runs, created the way the system
    creates every new file (mode 0o666 less the umask); when the writer replaced it with
    other permissions, those are put back before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        tmp.touch()
        mode = stat.S_IMODE(tmp.stat().st_mode)
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            tmp.chmod(mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save one array as .npy, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.save(stream, array)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
