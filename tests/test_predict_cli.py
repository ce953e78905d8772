"""`fgnet-video predict` and `weights` on the tiny preset (fast, no ../shared needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fgnet_video.aus import BP4D_AUS
from fgnet_video.cli import main
from fgnet_video.inference import precision as precision_module
from fgnet_video.model.config import TINY
from fgnet_video.model.init import random_model
from fgnet_video.weights.checkpoints import save_converted

from .conftest import shared_path


def _faces(tmp_path, sizes=(256, 256)):
    rng = np.random.default_rng(0)
    paths = []
    for i, side in enumerate(sizes):
        path = tmp_path / f"face{i}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_predict_writes_one_row_per_image(tiny_weights, tmp_path):
    paths = _faces(tmp_path, sizes=(256, 200))
    out, npz = tmp_path / "out.csv", tmp_path / "hm.npz"
    result = CliRunner().invoke(main, ["predict", "--aligned", "-w", str(tiny_weights),
                                       *map(str, paths), "-o", str(out), "--save-heatmaps",
                                       str(npz), "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "resized to 256x256" in result.output  # the 200 px image gets a note
    table = pd.read_csv(out)
    assert table["image"].tolist() == [str(p) for p in paths]
    assert table.columns.tolist()[1:5] == ["AU01_score", "AU01", "AU02_score", "AU02"]
    heatmaps = np.load(npz)["heatmaps"]
    assert heatmaps.shape == (2, 12, 32, 32)
    assert heatmaps.min() >= -1 and heatmaps.max() <= 1
    np.testing.assert_allclose(table["AU01_score"], heatmaps[:, 0].mean(axis=(1, 2)), atol=1e-6)


def test_predict_is_reproducible_and_batch_independent(tiny_weights, tmp_path):
    paths = [str(p) for p in _faces(tmp_path, sizes=(256, 256, 256))]
    runner = CliRunner()
    outputs = []
    for batch in ("1", "3"):
        out = tmp_path / f"b{batch}.csv"
        result = runner.invoke(main, ["predict", "--aligned", "-w", str(tiny_weights), *paths,
                                      "-o", str(out), "--batch-size", batch])
        assert result.exit_code == 0, result.output
        outputs.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(outputs[0], outputs[1], atol=1e-6)


def test_unaligned_photos_are_aligned_or_reported_without_a_face(tiny_weights, tmp_path):
    (noise,) = _faces(tmp_path, sizes=(300,))
    result = CliRunner().invoke(main, ["predict", "-w", str(tiny_weights), str(noise)])
    assert result.exit_code == 0, result.output
    assert f"note: {noise}: no face found" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith(str(noise)))
    assert row.split(",")[1] == "0" and set(row.split(",")[2:]) == {""}


def test_unaligned_photo_with_a_face(tiny_weights, tmp_path):
    photo = shared_path("reference", "ffhq_align", "celeb-2.png")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(main, ["predict", "-w", str(tiny_weights), str(photo), "-o",
                                       str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table.columns.tolist()[:3] == ["image", "success", "AU01_score"]
    assert table["success"].tolist() == [1] and table["AU01_score"].notna().all()


def test_predict_reports_unreadable_images(tiny_weights, tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    result = runner.invoke(main, ["predict", "--aligned", "-w", str(tiny_weights), str(bad)])
    assert result.exit_code == 1
    assert result.output.strip() == f"fgnet-video: error: {bad}: not a readable image " \
                                    "(UnidentifiedImageError)"
    result = runner.invoke(main, ["predict", "--aligned", "-w", str(tiny_weights),
                                  str(tmp_path / "absent.png")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_weights_init_and_info(tmp_path):
    runner = CliRunner()
    out = tmp_path / "tiny_disfa.safetensors"
    result = runner.invoke(main, ["weights", "init", "--preset", "tiny", "--dataset", "disfa",
                                  "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["weights", "info", str(out)])
    assert result.exit_code == 0
    assert "dataset: disfa" in result.output and "aus: [1, 2, 4, 6, 9, 12, 25, 26]" in result.output
    result = runner.invoke(main, ["weights", "info", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 1 and "not a readable safetensors file" in result.output


@pytest.mark.parametrize("value, precision, advice", [
    (float("nan"), "fp32", "the weights of {weights} produce non-finite values (the file may "
                           "be damaged)"),
    (float("inf"), "fp32", "the weights of {weights} produce non-finite values (the file may "
                           "be damaged)"),
    (float("nan"), "bf16", "use --precision fp32"),
])
def test_non_finite_heatmaps_get_advice_for_their_precision(tmp_path, value, precision, advice,
                                                            monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    model = random_model(TINY, seed=0)
    with torch.no_grad():
        model.interpreter.layer(TINY.n_levels - 1)[-1].weight.fill_(value)
    weights = save_converted(tmp_path / "broken.safetensors", model, "bp4d", BP4D_AUS)
    (face,) = _faces(tmp_path, sizes=(256,))
    result = CliRunner().invoke(main, ["predict", "--aligned", "-w", str(weights), "--device",
                                       "cpu", "--precision", precision, str(face)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"fgnet-video: error: the model produced non-finite heatmaps in {precision} on cpu: "
        + advice.format(weights=weights))


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_says_it_will_be_slow(tmp_path, monkeypatch, native):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    weights = save_converted(tmp_path / "tiny.safetensors", random_model(TINY, seed=0), "bp4d",
                             BP4D_AUS)
    (face,) = _faces(tmp_path, sizes=(256,))
    result = CliRunner().invoke(main, ["predict", "--aligned", "-w", str(weights), "--device",
                                       "cpu", "--precision", "bf16", str(face)])
    assert result.exit_code == 0, result.output
    warning = ("fgnet-video: warning: this CPU has no native bf16 (AVX512-BF16 or AMX): "
               "--precision bf16 will be several times slower than fp32")
    assert (warning in result.output.splitlines()) == (not native)
