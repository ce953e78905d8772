"""A shared cache works: every file written follows the user's umask, and the cache's lock
file serves users who may not write it."""

from __future__ import annotations

import fcntl
import os
import threading

import numpy as np
import pytest
import torch

import fgnet_video.cache as cache
from fgnet_video.atomic import atomic_path, save_npy, write_json
from fgnet_video.aus import BP4D_AUS
from fgnet_video.errors import UserError
from fgnet_video.model.config import TINY
from fgnet_video.model.init import random_model
from fgnet_video.weights.checkpoints import save_converted


@pytest.fixture()
def umask():
    """umask(value) for the rest of the test; the old one is put back afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def _write_everything(folder) -> list:
    """One file of each kind the project writes atomically."""
    paths = [folder / "model.safetensors", folder / "run.json", folder / "landmarks.npy",
             folder / "resume.pt", folder / "table.csv"]
    save_converted(paths[0], random_model(TINY, seed=0), "bp4d", BP4D_AUS,
                   extra={"kind": "random"})
    write_json(paths[1], {"a": 1})
    save_npy(paths[2], np.zeros((68, 2), np.float32))
    with atomic_path(paths[3]) as tmp:
        torch.save({"step": 1}, tmp)
    with atomic_path(paths[4]) as tmp:
        tmp.write_text("frame\n0\n")
    return paths


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(mask, mode, umask, tmp_path):
    """safetensors creates its files 0600; the atomic writer gives every file the mode a new
    file gets under the umask, and leaves no temporary file behind."""
    umask(mask)
    for path in _write_everything(tmp_path):
        assert _mode(path) == mode, path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "landmarks.npy", "model.safetensors", "resume.pt", "run.json", "table.csv"]


def test_lock_file_is_created_under_the_umask(umask, tmp_path):
    for mask, mode in ((0o022, 0o644), (0o002, 0o664)):
        umask(mask)
        path = tmp_path / f"{mask:o}" / ".lock"
        with cache.file_lock(path):
            pass
        assert _mode(path) == mode


def _locked_elsewhere(path) -> bool:
    """Whether another open file description of `path` would have to wait for the lock."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def test_lock_file_another_user_owns_is_used_read_only(tmp_path, monkeypatch):
    """A user who may not write the lock file (tests run as root, where permission bits do
    not stop anyone, so os.open refuses writing instead) still takes the lock, and it still
    excludes others."""
    path = tmp_path / ".lock"
    path.touch()
    path.chmod(0o444)
    real_open, flags_seen = os.open, []

    def open_as_other_user(file, flags, *args):
        flags_seen.append(flags)
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(cache.os, "open", open_as_other_user)
    with cache.file_lock(path):
        assert flags_seen[-1] == os.O_RDONLY
        monkeypatch.setattr(cache.os, "open", real_open)
        assert _locked_elsewhere(path)
    assert not _locked_elsewhere(path)


def test_lock_waits_for_its_holder(tmp_path):
    path = tmp_path / ".lock"
    order: list[str] = []

    def second() -> None:
        with cache.file_lock(path):
            order.append("second")

    with cache.file_lock(path):
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(0.3)
        order.append("first")
    waiter.join(5)
    assert order == ["first", "second"]


def test_unusable_lock_file_is_one_clear_line(tmp_path, monkeypatch):
    def refuse(file, flags, *args):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(cache.os, "open", refuse)
    with pytest.raises(UserError) as error, cache.file_lock(tmp_path / ".lock"):
        pass
    message = str(error.value)
    assert "\n" not in message
    assert "cannot open the lock file (Permission denied)" in message
    assert "umask 002" in message and "FGNET_VIDEO_HOME" in message
