"""`preprocess`: the release's landmark convention, output layout, resume, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.face.still import ReleaseAligner
from fgnet_video.media.images import read_rgb
from fgnet_video.train.preprocess import collect_sources

from .conftest import shared_path
from .test_video import write_video


@pytest.fixture(scope="module")
def aligner():
    return ReleaseAligner()


def test_release_landmarks_are_reproduced(aligner):
    """Source landmarks (largest HOG face, upsample 1) and the landmarks re-detected on
    aligned crops match the stored reference values exactly."""
    folder = shared_path("reference", "ffhq_align")
    stored = np.load(folder / "landmarks.npz")
    for name in ("celeb-2", "disfa_frame00"):
        _, landmarks = aligner.largest_face(read_rgb(folder / f"{name}.png"))
        np.testing.assert_array_equal(landmarks, stored[name])
    expected_256 = np.load(shared_path("reference", "heatmap_targets", "expected.npz"))
    for i, name in enumerate(("bp4d_aligned.jpg", "ffhq_aligned.jpg")):
        image = read_rgb(shared_path("reference", "fgnet_forward", name))
        np.testing.assert_array_equal(aligner.largest_face(image)[1],
                                      expected_256["landmarks_256"][i])


def test_aligner_reports_no_face(aligner):
    assert aligner(np.full((120, 160, 3), 90, np.uint8)) is None


def make_sources(tmp_path):
    folder = tmp_path / "raw"
    (folder / "subject1").mkdir(parents=True)
    shutil.copy(shared_path("reference", "ffhq_align", "celeb-2.png"), folder / "subject1")
    Image.fromarray(np.full((100, 120, 3), 90, np.uint8)).save(folder / "blank.png")
    return folder, shared_path("media", "vox_talking.mp4")


def run_cli(*args):
    result = CliRunner().invoke(main, ["preprocess", *map(str, args)])
    return result.exit_code, result.output


def test_preprocess_cli_end_to_end_and_resume(tmp_path):
    folder, video = make_sources(tmp_path)
    out = tmp_path / "data" / "demo"
    code, output = run_cli(folder, video, "--fps", "5", "--end", "0.8", "-o", out)
    assert code == 0, output
    frames = [f"vox_talking/{i:06d}" for i in (0, 5, 10, 15)]
    for key in ["subject1/celeb-2", *frames]:
        image = np.asarray(Image.open(out / "aligned_images" / f"{key}.jpg"))
        landmarks = np.load(out / "aligned_landmarks" / f"{key}.npy")
        assert image.shape == (256, 256, 3)
        assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
        assert 60 < landmarks[36:48, 0].mean() < 196  # eyes inside the crop
    assert sorted(p.name for p in (out / "aligned_images" / "vox_talking").iterdir()) == [
        f"{k.split('/')[1]}.jpg" for k in frames]
    assert (out / "no_face.txt").read_text() == "blank.png\n"
    assert "5 aligned, 0 already done, 1 without a face" in output
    assert "no face in: blank.png" in output
    # The release's crop, through JPEG.
    reference = np.asarray(Image.open(shared_path("reference", "ffhq_align",
                                                  "celeb-2_aligned.png")).convert("RGB"))
    written = np.asarray(Image.open(out / "aligned_images" / "subject1" / "celeb-2.jpg"))
    assert np.abs(written.astype(float) - reference).mean() < 2.5

    code, output = run_cli(folder, video, "--fps", "5", "--end", "0.8", "-o", out)
    assert code == 0 and "0 aligned, 6 already done, 0 without a face" in output
    (out / "aligned_images" / f"{frames[2]}.jpg").unlink()  # an interrupted item is redone
    code, output = run_cli(folder, video, "--fps", "5", "--end", "0.8", "-o", out, "-j", "2")
    assert code == 0 and "1 aligned, 5 already done" in output
    assert not list(out.rglob(".*partial*"))


def test_preprocess_rejects_bad_input(tmp_path):
    code, output = run_cli(tmp_path / "missing", "-o", tmp_path / "out")
    assert code == 1 and "no such file" in output and "Traceback" not in output
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00garbage" * 100)
    code, output = run_cli(garbage, "-o", tmp_path / "out")
    assert code == 1 and "not a readable video" in output
    code, output = run_cli(garbage, "-o", tmp_path / "out", "--fps", "0")
    assert code == 1 and "--fps" in output
    twins = tmp_path / "twins"
    twins.mkdir()
    for suffix in (".png", ".jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(twins / f"a{suffix}")
    with pytest.raises(UserError, match="both be written"):
        collect_sources([twins], tmp_path / "out")


def test_no_face_lists_inputs_by_file_name_and_resume_reads_old_lists(tmp_path):
    """no_face.txt names an image with its extension and a video frame as
    <video file>/<index>; a rerun skips what it lists, also in the older form without
    extensions."""
    raw = tmp_path / "raw"
    (raw / "day1").mkdir(parents=True)
    Image.fromarray(np.full((100, 120, 3), 90, np.uint8)).save(raw / "day1" / "blank.png")
    write_video(raw / "clip.mp4", [np.full((64, 64, 3), 40, np.uint8)] * 2)
    out = tmp_path / "out"
    code, output = run_cli(raw, "-o", out)
    assert code == 0, output
    assert (out / "no_face.txt").read_text() == (
        "clip.mp4/000000\nclip.mp4/000001\nday1/blank.png\n")
    assert "0 aligned, 0 already done, 3 without a face" in output
    assert "no face in: clip.mp4/000000, clip.mp4/000001, day1/blank.png" in output
    code, output = run_cli(raw, "-o", out)
    assert code == 0 and "0 aligned, 3 already done, 0 without a face" in output

    old = tmp_path / "old"
    old.mkdir()
    (old / "no_face.txt").write_text("clip/000000\nday1/blank\n")
    code, output = run_cli(raw, "-o", old)
    assert code == 0 and "0 aligned, 2 already done, 1 without a face" in output
    assert (old / "no_face.txt").read_text() == (
        "clip.mp4/000001\nclip/000000\nday1/blank\n")
