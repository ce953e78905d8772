"""`fgnet-video predict` and `weights` on the tiny preset (fast, no ../shared needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner
from PIL import Image

from fgnet_video.cli import main


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


def test_predict_refuses_unaligned_and_unreadable_input(tiny_weights, tmp_path):
    runner = CliRunner()
    (path,) = _faces(tmp_path, sizes=(256,))
    result = runner.invoke(main, ["predict", "-w", str(tiny_weights), str(path)])
    assert result.exit_code == 1 and "--aligned" in result.output
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
