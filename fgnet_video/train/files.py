"""Files written under a temporary name and renamed into place when complete."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path next to `path`, renamed over `path` when the block succeeds and
    removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path | str, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def save_npy(path: Path | str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.save(stream, array)
