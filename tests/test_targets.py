"""Heatmap training targets: parity with the release's targets and the size conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgnet_video.aus import BP4D_AUS, DISFA_AUS
from fgnet_video.errors import UserError
from fgnet_video.train.targets import (
    AU_ROIS,
    heatmap_targets,
    heatmap_targets_torch,
    roi_points,
    trainable_aus,
)

from .conftest import shared_path


@pytest.fixture(scope="module")
def reference() -> dict:
    with np.load(shared_path("reference", "heatmap_targets", "expected.npz")) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("dataset", ["bp4d", "disfa"])
def test_numpy_targets_match_release(reference: dict, dataset: str) -> None:
    size, sigma = int(reference["size"]), float(reference["sigma"])
    for i in range(len(reference["landmarks_256"])):
        got = heatmap_targets(reference["landmarks_256"][i], reference[f"{dataset}_labels"][i],
                              dataset, size=size, sigma=sigma)
        assert got.dtype == np.float32
        assert got.shape == reference[f"{dataset}_heatmaps"][i].shape
        np.testing.assert_allclose(got, reference[f"{dataset}_heatmaps"][i], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dataset", ["bp4d", "disfa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_torch_targets_match_release(reference: dict, dataset: str,
                                             dtype: torch.dtype) -> None:
    landmarks = torch.tensor(reference["landmarks_256"], dtype=dtype)
    labels = torch.tensor(reference[f"{dataset}_labels"])
    got = heatmap_targets_torch(landmarks, labels, dataset)
    assert got.dtype == dtype
    expected = reference[f"{dataset}_heatmaps"]
    np.testing.assert_allclose(got.float().numpy(), expected, rtol=0, atol=1e-6)


def _face_landmarks() -> np.ndarray:
    """A plausible aligned-face landmark set (no reference data needed): a scaled grid."""
    rng = np.random.default_rng(3)
    return rng.uniform(60, 200, size=(68, 2))


def test_custom_au_tuple_selects_the_same_channels() -> None:
    landmarks = _face_landmarks()
    labels = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1])
    full = heatmap_targets(landmarks, labels, "bp4d")
    order = (12, 1, 17)
    picked = heatmap_targets(landmarks, labels[[BP4D_AUS.index(a) for a in order]], order)
    np.testing.assert_array_equal(picked, full[[BP4D_AUS.index(a) for a in order]])


def test_sign_follows_label_and_values_are_clipped() -> None:
    landmarks = _face_landmarks()
    on = heatmap_targets(landmarks, np.ones(8), "disfa")
    off = heatmap_targets(landmarks, np.zeros(8), "disfa")
    np.testing.assert_array_equal(on, -off)
    assert on.max() <= 1.0 and on.min() == 0.0
    # Coinciding windows sum to 2 at the centre: clipped to 1 (there only).
    centred = heatmap_targets(np.full((68, 2), 128.0), np.ones(8), "disfa")
    assert centred.max() == 1.0 and centred[0, 64, 64] == 1.0
    assert centred[0, 64, 90] == pytest.approx(min(1.0, 2 * np.exp(-(26**2) / 800)), abs=1e-6)
    # Everything below the 0.01 floor was zeroed: no tiny positive values remain.
    assert not ((on > 0) & (on < 0.01)).any()


def test_other_sizes_resample_the_same_picture() -> None:
    """sigma is in 128-px units and landmarks scale by size/256, so the 256-px target sampled
    at even pixels is the 128-px target."""
    landmarks = torch.tensor(_face_landmarks())[None]
    labels = torch.tensor([[1, 0, 1, 1, 0, 1, 1, 0]])
    t128 = heatmap_targets_torch(landmarks, labels, "disfa", size=128, sigma=20.0)
    t256 = heatmap_targets_torch(landmarks, labels, "disfa", size=256, sigma=20.0)
    np.testing.assert_allclose(t256[..., ::2, ::2].numpy(), t128.numpy(), atol=1e-12)


def test_batched_equals_per_face() -> None:
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(40, 220, size=(3, 68, 2))
    labels = rng.integers(0, 2, size=(3, len(BP4D_AUS)))
    batched = heatmap_targets_torch(torch.tensor(landmarks), torch.tensor(labels), "bp4d", 32)
    for i in range(3):
        single = heatmap_targets(landmarks[i], labels[i], "bp4d", size=32)
        np.testing.assert_allclose(batched[i].numpy(), single, atol=1e-7)


def test_roi_points_of_shifted_aus() -> None:
    landmarks = torch.tensor(_face_landmarks())
    iod = torch.linalg.vector_norm(landmarks[42] - landmarks[39])
    points = roi_points(landmarks, (6, 17, 26))
    np.testing.assert_allclose(points[0, 0], landmarks[36:42].mean(0) + torch.stack(
        [torch.tensor(0.0, dtype=torch.float64), iod]))
    np.testing.assert_allclose(points[1, 1], landmarks[58] + torch.stack(
        [torch.tensor(0.0, dtype=torch.float64), iod / 2]))
    np.testing.assert_allclose(points[2, 1], landmarks[58])


def test_au_without_roi_is_a_user_error() -> None:
    assert 5 not in AU_ROIS
    with pytest.raises(UserError, match="no ROI definition for AU 5"):
        heatmap_targets(_face_landmarks(), np.ones(2), (1, 5))
    with pytest.raises(UserError, match="twice"):
        trainable_aus((1, 1))
    assert trainable_aus("DISFA") == DISFA_AUS


def test_wrong_shapes_are_user_errors() -> None:
    with pytest.raises(UserError, match="labels must be"):
        heatmap_targets(_face_landmarks(), np.ones(3), "disfa")
    with pytest.raises(UserError, match="landmarks must be"):
        heatmap_targets(np.zeros((5, 2)), np.ones(8), "disfa")
