"""Outputs frozen before the package was rearranged: every table, sidecar, overlay and saved
tracks file of `analyze` on the real clips (tiny random weights) must stay byte-identical.

The files under tests/data/frozen_outputs/ were produced by this module's `produce` on the
code before the move (`python -m tests.test_frozen_outputs --freeze tests/data/frozen_outputs`)
and are compared with what the current code writes. A sidecar is compared without what
changes from run to run (start time, wall-clock timings, absolute paths); its record of each
output's size and sha256 stays, so the saved tracks are compared through it. An overlay is
not byte-reproducible even on unchanged code (two runs of the phone clip differ by a few
levels in a few pixels after the H.264 round trip), so it is compared as every frame
shrunk to 32x18 grey levels (`thumbnails`), within 2 levels. Every command's `--help` (its
options, defaults and help texts) was frozen the same way, in tests/data/frozen_outputs/help/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[1]
FROZEN = Path(__file__).resolve().parent / "data" / "frozen_outputs"
SHARED_MEDIA = REPO.parent / "shared" / "media"
CLIPS = {  # output name -> (input, extra analyze options)
    "disfa": (SHARED_MEDIA / "sample_disfa.avi", []),
    "vox": (SHARED_MEDIA / "vox_talking.mp4", []),
    "vox_openface_smooth": (SHARED_MEDIA / "vox_talking.mp4",
                            ["--columns", "openface", "--smooth", "0.4"]),
    "webcam": (SHARED_MEDIA / "webcam_lamp.wmv", []),
    "phone": (SHARED_MEDIA / "phone_cut_vfr.mov", []),
    "astronaut": (REPO / "sample_videos" / "astronaut.mp4", []),
}
VOLATILE = {("started_at",), ("input", "path"), ("checkpoint", "path"),
            ("stats", "wall_seconds"), ("stats", "stages"), ("outputs", "overlay", "bytes"),
            ("outputs", "overlay", "sha256")}
THUMBNAIL = (32, 18)  # (width, height) of an overlay frame's fingerprint


def _fgnet_video(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fgnet_video", *args], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"fgnet-video {' '.join(args)}\n{done.stderr}"


def produce(out: Path) -> None:
    """Tiny random weights (`weights init --preset tiny`), then `analyze` of every clip with
    an overlay and saved tracks, each into `out`, with dlib's HOG detector and the person
    distance of the versions before the CNN detector (their tables, which `--detector hog
    --same-person-distance 0.6` keep byte for byte)."""
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "tiny.safetensors"
    _fgnet_video("weights", "init", "--preset", "tiny", "-o", str(weights))
    for name, (video, extra) in CLIPS.items():
        _fgnet_video("analyze", str(video), "-o", str(out / f"{name}.csv"), "-w", str(weights),
                     "--device", "cpu", "--overlay", "--save-tracks", "--detector", "hog",
                     "--same-person-distance", "0.6", *extra)
    weights.unlink()


def normalised_sidecar(path: Path) -> dict:
    """The sidecar at `path` without the fields that change from run to run."""
    record = json.loads(path.read_text())
    for keys in VOLATILE:
        parent = record
        for key in keys[:-1]:
            parent = parent[key]
        del parent[keys[-1]]
    return record


def thumbnails(video: Path) -> np.ndarray:
    """(frames, 18, 32) uint8: each frame of `video` in grey, shrunk by area averaging."""
    import av
    import cv2

    with av.open(str(video)) as container:
        return np.stack([cv2.resize(frame.to_ndarray(format="gray"), THUMBNAIL,
                                    interpolation=cv2.INTER_AREA)
                         for frame in container.decode(video=0)])


def freeze(folder: Path) -> None:
    """Write the frozen outputs: each table as it is, each sidecar normalised, each overlay
    as its thumbnails (NAME.overlay.npy); the saved tracks are recorded in the sidecar."""
    produce(folder)
    for name in CLIPS:
        sidecar = folder / f"{name}.json"
        sidecar.write_text(json.dumps(normalised_sidecar(sidecar), indent=1, sort_keys=True)
                           + "\n")
        overlay = folder / f"{name}.overlay.mp4"
        np.save(folder / f"{name}.overlay.npy", thumbnails(overlay))
        overlay.unlink()
        (folder / f"{name}.tracks.npz").unlink()


@pytest.mark.slow
def test_analyze_writes_the_frozen_outputs(tmp_path):
    shared_path("media")
    produce(tmp_path)
    for name in CLIPS:
        assert (tmp_path / f"{name}.csv").read_bytes() == (FROZEN / f"{name}.csv").read_bytes(), \
            name
        expected = json.loads((FROZEN / f"{name}.json").read_text())
        assert normalised_sidecar(tmp_path / f"{name}.json") == expected, name
        frames = thumbnails(tmp_path / f"{name}.overlay.mp4").astype(np.int16)
        frozen = np.load(FROZEN / f"{name}.overlay.npy").astype(np.int16)
        assert frames.shape == frozen.shape, name
        assert np.abs(frames - frozen).max() <= 2, name


HELP = FROZEN / "help"


def _commands() -> list[list[str]]:
    from fgnet_video.cli import main

    return ([[]] + [[name] for name in main.commands]
            + [["weights", name] for name in main.commands["weights"].commands])


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "fgnet-video")
def test_every_command_keeps_its_options_and_help(command):
    """`--help` of every command as frozen before the move (Click at 100 columns)."""
    from click.testing import CliRunner

    from fgnet_video.cli import main

    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=100,
                                prog_name="fgnet-video")
    assert result.exit_code == 0, result.output
    assert result.output == (HELP / f"{'_'.join(command) or 'main'}.txt").read_text()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freeze", metavar="DIR", required=True, type=Path)
    freeze(parser.parse_args().freeze)
