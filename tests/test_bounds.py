"""Options and inputs that would run away get a bound a user can understand: the smallest
face, finite thresholds, the size a reference photo is searched at."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.face.person import PHOTO_MAX_SIDE
from fgnet_video.media.images import read_rgb
from fgnet_video.options import SMALLEST_MIN_FACE, FaceSettings

from .conftest import shared_path


@pytest.mark.parametrize("value", [1.0, 19.9, float("inf"), float("nan")])
def test_min_face_is_bounded_by_the_detectors_upscaling(value):
    with pytest.raises(UserError, match=r"--min-face must be a number of pixels from 20 up.*"
                                        r"upscaled 4x"):
        FaceSettings(min_face_size=value)
    assert FaceSettings(min_face_size=SMALLEST_MIN_FACE).min_face_size == 20


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_min_confidence_must_be_finite(value):
    with pytest.raises(UserError, match="--min-confidence must be a finite number"):
        FaceSettings(min_confidence=value)


def test_min_face_one_is_refused_at_once_by_the_command(tmp_path):
    result = CliRunner().invoke(main, ["analyze", "clip.mp4", "-o", str(tmp_path / "a.csv"),
                                       "--min-face", "1"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "fgnet-video: error: --min-face must be a number of pixels from 20 up, got 1: the "
        "detector sees faces from 80 px, so --min-face 20 already scans frames upscaled 4x"]


def test_a_huge_photo_is_read_at_a_bounded_size(tmp_path):
    photo = tmp_path / "huge.jpg"  # 110 megapixels
    Image.fromarray(np.full((8000, 13750, 3), 128, np.uint8)).save(photo, quality=30)
    image = read_rgb(photo, max_side=PHOTO_MAX_SIDE)
    assert max(image.shape[:2]) <= PHOTO_MAX_SIDE and image.shape[2] == 3
    assert image.shape[1] / image.shape[0] == pytest.approx(13750 / 8000, rel=0.01)


def test_plot_of_thousands_of_tracks_draws_the_most_seen_and_says_so(tmp_path):
    import pandas as pd

    from fgnet_video.reports.plot import MAX_PERSONS, plot_table

    frames = [(k, track) for k in range(400) for track in (k % 397, 5000 + k % 3)]
    table = pd.DataFrame({"frame": [k for k, _ in frames],
                          "timestamp": [k / 25 for k, _ in frames],
                          "face_id": [t for _, t in frames], "success": 1,
                          "confidence": 0.9, "AU01_score": 0.5, "AU01": 1})
    table = pd.concat([table, pd.DataFrame({"frame": range(400, 5400),
                                            "timestamp": [k / 25 for k in range(400, 5400)],
                                            "face_id": range(10_000, 15_000), "success": 1,
                                            "confidence": 0.9, "AU01_score": 0.5,
                                            "AU01": 1})], ignore_index=True)
    with pytest.warns(UserWarning, match=f"{MAX_PERSONS} of 5400 face_id values shown"):
        figure = plot_table(table)
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert len(titles) == MAX_PERSONS
    assert any(t.startswith("face_id 5000:") for t in titles)  # seen in 134 frames


def test_a_ray_address_where_nothing_listens_is_one_line_at_once(tmp_path):
    import socket

    from fgnet_video.study.ray_cluster import check_reachable

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match=rf"--ray 127.0.0.1:{port}: nothing answers there "
                                        r"\(connection refused\)"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(UserError, match="give auto, HOST:PORT or ray://HOST:PORT"):
        check_reachable("nowhere")
    with socket.socket() as server:  # something listens, accepts, and says nothing
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"ray://127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(UserError, match=rf"--ray {address}: something listens there, but "
                                            r"it is not a Ray cluster \(no gRPC answer within "
                                            r"0.5 s\)"):
            check_reachable(address, timeout=0.5)
        assert time.monotonic() - started < 2
    check_reachable("auto")
    check_reachable(None)


def test_the_address_of_something_that_is_not_ray_is_one_line_within_the_deadline(tmp_path):
    """Through the CLI: a server that accepts connections and never answers (ray.init
    retried it for minutes) ends the command with one line, long before Ray would."""
    import socket
    import subprocess
    import sys

    from .conftest import REPO, shared_path

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "fgnet_video", "analyze",
                               str(shared_path("media", "vox_talking.mp4")), "--out-dir",
                               str(tmp_path / "out"), "--ray", address], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"fgnet-video: error: --ray {address}: something listens there, but it is not a Ray "
        "cluster (no gRPC answer within 10 s); give the head's GCS address (HOST:6379 by "
        "default) or its client address (ray://HOST:10001)"]
    assert time.monotonic() - started < 60


# -- saved tracks that are not what they claim --------------------------------------------------

@pytest.fixture(scope="module")
def saved_tracks(tmp_path_factory, tiny_weights):
    """(video, tracks file, its arrays) of vox_talking at 2 frames per second."""
    folder = tmp_path_factory.mktemp("tracks")
    video = folder / "v.mp4"
    shutil.copy(shared_path("media", "vox_talking.mp4"), video)
    result = CliRunner().invoke(main, ["analyze", str(video), "-o", str(folder / "v.csv"), "-w",
                                       str(tiny_weights), "--fps", "2", "--save-tracks"])
    assert result.exit_code == 0, result.output
    tracks = folder / "v.tracks.npz"
    with np.load(tracks) as data:
        arrays = {key: data[key] for key in data.files}
    return video, tracks, arrays


def _damaged(arrays: dict, name: str) -> dict:
    arrays = dict(arrays)
    if name == "landmarks_far":
        arrays["landmarks"] = arrays["landmarks"] * 1e6
    elif name == "short_face_id":
        arrays["face_id"] = arrays["face_id"][:-1]
    elif name == "meta_list":
        arrays["meta"] = np.asarray("[1, 2]")
    elif name == "no_landmarks":
        del arrays["landmarks"]
    elif name == "one_id_twice":
        n = len(arrays["face_frame"])
        arrays["face_frame"] = np.zeros(n, arrays["face_frame"].dtype)
        arrays["face_id"] = np.zeros(n, arrays["face_id"].dtype)
    return arrays


@pytest.mark.parametrize("damage, what", [
    ("truncated", "not a readable tracks file (it is cut off or damaged)"),
    ("random", "not a readable tracks file (it holds Python objects or is no NumPy file"),
    ("landmarks_far", "landmarks lies outside any frame"),
    ("short_face_id", "face_id has shape"),
    ("meta_list", "its meta is not a JSON object"),
    ("no_landmarks", "not a tracks file: no landmarks array"),
    ("one_id_twice", "frame 0 holds face id 0 more than once"),
])
def test_damaged_tracks_are_one_line_naming_the_file(saved_tracks, tmp_path, tiny_weights,
                                                     damage, what):
    video, tracks, arrays = saved_tracks
    bad = tmp_path / "bad.tracks.npz"
    if damage == "truncated":
        bad.write_bytes(tracks.read_bytes()[: tracks.stat().st_size // 2])
    elif damage == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        np.savez_compressed(bad, **_damaged(arrays, damage))
    result = CliRunner().invoke(main, ["analyze", str(video), "-o", str(tmp_path / "o.csv"),
                                       "-w", str(tiny_weights), "--fps", "2", "--tracks",
                                       str(bad)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"fgnet-video: error: {bad}: ") and what in lines[-1], lines
    assert "allow_pickle" not in result.output and "Traceback" not in result.output


# -- errors that name the problem, not a Python exception ---------------------------------------

@pytest.mark.parametrize("manifest, what", [
    ("path,name\nclip.mp4,x\x00y\n",
     "line 2: the name holds a control character (a NUL byte or a line break?)"),
    ("name,path\nx\n", "line 2 gives no path"),
    ("path,name\nclip.mp4," + "n" * 300 + "\n",
     "line 2: the name has a part of 300 bytes (at most 200 make a file name)"),
])
def test_bad_manifest_rows_are_refused_at_planning(tmp_path, manifest, what):
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "m.csv").write_text(manifest)
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "m.csv"), "--out-dir",
                                       str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"fgnet-video: error: {tmp_path / 'm.csv'}: {what}"


@pytest.mark.parametrize("stem, what", [
    ("a\nb", "holds a control character (a NUL byte or a line break?)"),
    ("n" * 230, "has a part of 230 bytes (at most 200 make a file name)"),
])
@pytest.mark.parametrize("given", ["folder", "file"])
def test_input_names_unusable_as_output_names_are_a_refused_plan(tmp_path, stem, what, given):
    """A video whose name would make an output name with a line break (breaking every
    one-line message) or too long for our partial's suffix: one line, exit 2, nothing
    written; the way out is a manifest name."""
    folder = tmp_path / "in"
    folder.mkdir()
    video = folder / f"{stem}.mp4"
    shutil.copy(shared_path("media", "vox_talking.mp4"), video)
    target = folder if given == "folder" else video
    result = CliRunner().invoke(main, ["analyze", str(target), "--out-dir",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"fgnet-video: error: {str(video)!r}: its output name "
                                     f"{what}; rename the file, or give it another name in a "
                                     "manifest")
    assert not (tmp_path / "out").exists()


def test_an_absurd_batch_size_is_refused_with_its_range():
    from fgnet_video.options import ModelOptions

    with pytest.raises(UserError, match=r"--batch-size must be from 1 to 4096 \(or auto\), "
                                        r"not 99999999999999999999"):
        ModelOptions(batch_size="99999999999999999999")


@pytest.mark.parametrize("command", ["summarize", "plot"])
def test_tables_that_are_no_regular_files_say_what_they_are(tmp_path, command):
    import os

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    for table, kind in ((fifo, "a FIFO (named pipe)"), (tmp_path / "zero.csv", "a device")):
        args = [command, str(table)] + (["-o", str(tmp_path / "p.png")] if command == "plot"
                                        else [])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        assert result.output.strip() == (f"fgnet-video: error: {table}: is {kind}, not a "
                                         "regular table file")


def test_a_table_without_timestamps_is_refused(tmp_path):
    import pandas as pd

    table = tmp_path / "t.csv"
    pd.DataFrame({"frame": [0, 1], "timestamp": [0.0, float("nan")], "face_id": [0, 0],
                  "success": [1, 1], "confidence": [1.0, 1.0], "AU01_score": [0.1, 0.2],
                  "AU01": [1, 0]}).to_csv(table, index=False)
    for args in (["summarize", str(table)], ["plot", str(table), "-o", str(tmp_path / "p.png")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        assert result.output.strip() == (f"fgnet-video: error: {table}: row 2 has no "
                                         "timestamp (a number of seconds)")


def test_two_inputs_with_one_output_name_are_a_refused_plan(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip.mp4").write_bytes(b"")
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "a" / "clip.mp4"),
                                       str(tmp_path / "b" / "clip.mp4"), "--out-dir",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2 and "would both write outputs named 'clip'" in result.output


def test_two_inputs_whose_output_names_differ_only_in_case_are_a_refused_plan(tmp_path):
    """Interview.mp4 and interview.mp4 in one folder: Interview.csv and interview.csv are
    one file on macOS's and Windows's file systems, so the second would replace the first."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("Interview.mp4", "interview.mp4"):
        (folder / name).write_bytes(b"")
    result = CliRunner().invoke(main, ["analyze", str(folder), "--out-dir",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"fgnet-video: error: {folder / 'Interview.mp4'} and {folder / 'interview.mp4'} would "
        "both write outputs named 'Interview' and 'interview', one file where case is ignored "
        "(macOS, Windows): list them in a manifest with distinct names")


def test_a_checkpoint_claiming_a_known_dataset_must_hold_its_aus(tmp_path):
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import load_model, save_converted

    path = save_converted(tmp_path / "two.safetensors", random_model(TINY, seed=0), "bp4d",
                          (1, 2))
    with pytest.raises(UserError, match=r"says bp4d but lists AUs \[1, 2\], not bp4d's "
                                        r"\[1, 2, 4, 6"):
        load_model(path)
    custom = save_converted(tmp_path / "c.safetensors", random_model(TINY, seed=0), "custom",
                            (1, 2))
    assert load_model(custom).aus == (1, 2)


def test_a_full_disk_while_writing_weights_is_one_line(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from fgnet_video.weights import checkpoints

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(checkpoints, "save_file", full)
    result = CliRunner().invoke(main, ["weights", "init", "--preset", "tiny", "-o",
                                       str(tmp_path / "w.safetensors")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"fgnet-video: error: {tmp_path / 'w.safetensors'}: could not be written (Error while "
        "serializing: IoError(No space left on device))")
    assert list(tmp_path.iterdir()) == []  # no partial left behind
