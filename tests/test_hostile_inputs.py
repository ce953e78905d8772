"""Odd and hostile inputs end in one clear line: cut videos, special files, huge images,
files that are no checkpoint."""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.media.images import read_rgb
from fgnet_video.model.config import TINY
from fgnet_video.model.init import random_model

from .conftest import shared_path
from .test_video import cut, remux


def within(seconds: float, call):
    """call()'s result, run in a daemon thread; fails the test when it is still running after
    `seconds` (an open that blocks, as on a FIFO, would hang the test run otherwise)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` RGB pixels and holds none of them (PIL reads
    the size from the header when it opens a file)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def one_error_line(result, expected: str) -> None:
    """The CLI failed with exactly `fgnet-video: error: <expected>`."""
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"fgnet-video: error: {expected}"


def test_an_image_over_the_pixel_limit_is_too_large_not_a_traceback(tiny_weights, tmp_path):
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_header(20000, 20000))
    expected = f"{bomb}: image too large (400 megapixels, over the 179 megapixel limit)"
    with pytest.raises(UserError) as error:
        read_rgb(bomb)
    assert str(error.value) == expected
    result = CliRunner().invoke(main, ["predict", "--aligned", "-w", str(tiny_weights),
                                       "--device", "cpu", str(bomb)])
    one_error_line(result, expected)


def test_a_real_image_over_a_lowered_limit_is_too_large(tmp_path, monkeypatch):
    path = tmp_path / "plain.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    with pytest.raises(UserError) as error:
        read_rgb(path)
    assert str(error.value) == f"{path}: image too large (0.12 megapixels, over the 0.1 " \
                               "megapixel limit)"


@pytest.mark.parametrize("command", ["predict", "analyze"])
def test_special_files_are_named_at_once(tiny_weights, tmp_path, command):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    what = "image" if command == "predict" else "video"
    expected = {fifo: "a FIFO (named pipe)", Path("/dev/zero"): "a device",
                Path("/dev/urandom"): "a device"}
    for path, kind in expected.items():
        args = [command, "-w", str(tiny_weights), "--device", "cpu", str(path)]
        if command == "analyze":
            args += ["-o", str(tmp_path / "out.csv")]
        else:
            args.insert(1, "--aligned")
        result = within(60, lambda args=args: CliRunner().invoke(main, args))
        one_error_line(result, f"{path}: is {kind}, not a regular {what} file")


def test_a_cut_video_is_analysed_and_reported_truncated(tiny_weights, tmp_path):
    full = remux(shared_path("media", "vox_talking.mp4"), tmp_path / "vox.mkv")
    clip = cut(full, 2 / 3)
    out = tmp_path / "cut.csv"
    result = CliRunner().invoke(main, ["analyze", "-w", str(tiny_weights), "--device", "cpu",
                                       "--fps", "1", str(clip), "-o", str(out)])
    assert result.exit_code == 0, result.output
    reason = "the stream ends at 3.12 s of the 4.72 s its header declares"
    assert f"{clip}: truncated video: {reason}" in result.output
    assert json.loads(out.with_suffix(".json").read_text())["truncated"] == reason


def test_files_that_are_no_checkpoint_are_named_by_the_cli(tmp_path):
    image = tmp_path / "face.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(image)
    noise = tmp_path / "noise.pth"
    noise.write_bytes(b"\x17" + np.random.default_rng(0).bytes(4095))
    model = random_model(TINY, seed=0)
    release = tmp_path / "model.pth"
    torch.save({part: getattr(model, part).state_dict()
                for part in ("interpreter", "g_all", "pspencoder")}, release)
    video = tmp_path / "encoder.pt"
    video.write_bytes(shared_path("media", "vox_talking.mp4").read_bytes())
    runner = CliRunner()
    result = runner.invoke(main, ["predict", "--aligned", "-w", str(noise), str(image)])
    one_error_line(result, f"{noise}: not a PyTorch checkpoint (neither a zip archive nor a "
                           "pickle: unrecognised bytes (random data?))")
    result = runner.invoke(main, ["predict", "--aligned", "-w", str(release), "--psp",
                                  str(video), str(image)])
    one_error_line(result, f"{video}: not a PyTorch checkpoint (neither a zip archive nor a "
                           "pickle: an MP4/MOV video)")
