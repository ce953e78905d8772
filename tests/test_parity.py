"""Full-size parity with the FG-Net release (../shared/reference/fgnet_forward).

The checkpoints come from the reference script (the release's exact key layout); the
expected tensors were produced by the release code with them. Tolerances are the
reference README's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fgnet_video.cli import main
from fgnet_video.weights.checkpoints import load_model

from .conftest import shared_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def expected():
    return np.load(shared_path("reference", "fgnet_forward", "expected_seed0.npz"))


@pytest.fixture(scope="module")
def release_model(reference_checkpoints):
    model_pth, encoder_pt = reference_checkpoints
    return load_model(model_pth, psp=encoder_pt, dataset="bp4d")


def _relative(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


def _check_heatmaps(heatmaps: np.ndarray, expected) -> None:
    diff = np.abs(heatmaps[:, :12] - expected["heatmaps"])
    assert diff.max() <= 1e-3 and diff.mean() <= 1e-4, (diff.max(), diff.mean())


def _check_decisions(scores: np.ndarray, reference_means: np.ndarray) -> None:
    confident = np.abs(reference_means) > 0.01
    assert confident.any()
    np.testing.assert_array_equal((scores > 0)[confident], (reference_means > 0)[confident])


@torch.no_grad()
def test_python_api_reproduces_the_release(release_model, expected):
    model = release_model.model
    x = torch.from_numpy(expected["images"])
    codes = model.pspencoder(x) + model.latent_avg
    assert _relative(codes.numpy(), expected["encoder_codes"]) <= 1e-4
    w_plus = model.g_all.mapping(codes)
    assert _relative(w_plus.numpy(), expected["w_plus"]) <= 1e-4

    trace = model.trace(x)
    means = np.stack([[f[i].mean().item() for f in trace.features] for i in range(2)])
    abs_means = np.stack([[f[i].abs().mean().item() for f in trace.features] for i in range(2)])
    np.testing.assert_allclose(means, expected["feature_means"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(abs_means, expected["feature_abs_means"], rtol=1e-4, atol=1e-5)

    heatmaps = trace.heatmaps.clamp(-1, 1).numpy()
    _check_heatmaps(heatmaps, expected)
    au_means = heatmaps.mean(axis=(2, 3))
    np.testing.assert_allclose(au_means, expected["au_means"], atol=1e-4)
    _check_decisions(au_means, expected["au_means"])


def test_predict_cli_on_png_copies_through_a_converted_file(
        reference_checkpoints, expected, tmp_path):
    model_pth, encoder_pt = reference_checkpoints
    images = np.rint((expected["images"].transpose(0, 2, 3, 1) + 1) / 2 * 255).astype(np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"face{i}.png")
        Image.fromarray(image).save(paths[-1])
    runner = CliRunner()
    converted = tmp_path / "bp4d.safetensors"
    result = runner.invoke(main, ["weights", "import", str(model_pth), "--psp", str(encoder_pt),
                                  "--dataset", "bp4d", "-o", str(converted)])
    assert result.exit_code == 0, result.output
    csv, npz = tmp_path / "aus.csv", tmp_path / "hm.npz"
    result = runner.invoke(main, ["predict", "--aligned", "-w", str(converted), *map(str, paths),
                                  "-o", str(csv), "--save-heatmaps", str(npz)])
    assert result.exit_code == 0, result.output

    table = pd.read_csv(csv)
    assert list(table.columns[:3]) == ["image", "AU01_score", "AU01"]
    assert len(table.columns) == 1 + 2 * 12
    scores = table[[c for c in table.columns if c.endswith("_score")]].to_numpy()
    np.testing.assert_allclose(scores, expected["au_means"][:, :12], atol=1e-4)
    _check_decisions(scores, expected["au_means"][:, :12])
    active = table[[c for c in table.columns if c.startswith("AU") and "_" not in c]].to_numpy()
    np.testing.assert_array_equal(active, (scores > 0).astype(int))

    saved = np.load(npz)
    assert saved["heatmaps"].shape == (2, 12, 128, 128)
    assert [str(p) for p in paths] == saved["images"].tolist()
    _check_heatmaps(saved["heatmaps"], expected)
