"""The release's heatmap training targets: each AU's two regions of interest (ROI) on the
aligned face, and the Gaussian heatmaps drawn around them.

Each ROI point is the mean of a few dlib 68-point landmarks, optionally moved down (+y) by
a multiple of the inter-ocular distance IOD = |lmk42 - lmk39|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fgnet_video.aus import au_set
from fgnet_video.errors import UserError

if TYPE_CHECKING:  # torch is imported where the targets are computed
    import torch


@dataclass(frozen=True)
class RoiRule:
    """Landmark indices averaged into the AU's two ROI points, and a downward shift in IODs."""

    first: tuple[int, ...]
    second: tuple[int, ...]
    shift_iod: float = 0.0


_MOUTH_CORNERS = RoiRule((48,), (54,))
_LIP_CENTRES = RoiRule((51,), (57,))


AU_ROIS: dict[int, RoiRule] = {
    1: RoiRule((21,), (22,)),
    2: RoiRule((17,), (26,)),
    4: RoiRule(tuple(range(17, 22)), tuple(range(22, 27))),
    6: RoiRule(tuple(range(36, 42)), tuple(range(42, 48)), shift_iod=1.0),
    7: RoiRule((38,), (43,)),
    9: RoiRule((39,), (42,)),
    10: RoiRule((50,), (52,)),
    12: _MOUTH_CORNERS,
    14: _MOUTH_CORNERS,
    15: _MOUTH_CORNERS,
    17: RoiRule((56,), (58,), shift_iod=0.5),
    23: _LIP_CENTRES,
    24: _LIP_CENTRES,
    25: _LIP_CENTRES,
    26: RoiRule((56,), (58,)),
}
LANDMARK_SPACE = 256  # landmarks are given in the coordinates of a 256x256 aligned face
SIGMA_SPACE = 128  # sigma is given in the units of 128x128 heatmaps (the release's size)
TARGET_FLOOR = 0.01  # Gaussian values below this are zeroed before the two windows are added


def _roi_matrix(aus: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(2n, 68) averaging weights giving the ROI points, and the (2n,) shifts in IODs."""
    weights = np.zeros((2 * len(aus), 68))
    shifts = np.zeros(2 * len(aus))
    for k, au in enumerate(aus):
        rule = AU_ROIS[au]
        for j, indices in enumerate((rule.first, rule.second)):
            weights[2 * k + j, list(indices)] = 1.0 / len(indices)
            shifts[2 * k + j] = rule.shift_iod
    return weights, shifts


def roi_points(landmarks: torch.Tensor, aus: tuple[int, ...]) -> torch.Tensor:
    """ROI points (..., n_aus, 2, 2) as (x, y), in the coordinates of `landmarks` (..., 68, 2)."""
    import torch

    weights, shifts = _roi_matrix(aus)
    weights_t = torch.as_tensor(weights, dtype=landmarks.dtype, device=landmarks.device)
    shifts_t = torch.as_tensor(shifts, dtype=landmarks.dtype, device=landmarks.device)
    points = weights_t @ landmarks  # (..., 2n, 2)
    iod = torch.linalg.vector_norm(landmarks[..., 42, :] - landmarks[..., 39, :], dim=-1)
    points[..., 1] = points[..., 1] + shifts_t * iod[..., None]
    return points.reshape(*landmarks.shape[:-2], len(aus), 2, 2)


def heatmap_targets_torch(
    landmarks_256: torch.Tensor,
    labels: torch.Tensor,
    dataset: str | tuple[int, ...] | list[int],
    size: int = 128,
    sigma: float = 20.0,
) -> torch.Tensor:
    """Batched training targets (B, n_aus, size, size) in the dtype/device of `landmarks_256`.

    landmarks_256: (B, 68, 2) dlib landmarks (x, y) of 256x256 aligned faces.
    labels: (B, n_aus) occurrences; an AU is active iff its label is > 0.
    For every AU and each of its two ROI points p (scaled by size/256), on the pixel-index
    grid x, y = 0 .. size-1:

        g_p(x, y) = exp(-((x - p_x)^2 + (y - p_y)^2) / (2 s^2)),  s = sigma * size / 128
        g_p = 0 where g_p < 0.01
        target = clip(sign * (g_p1 + g_p2), -1, 1),  sign = +1 if active else -1

    sigma is in 128-px units, so a target at another size is the same picture resampled.
    """
    import torch

    aus = trainable_aus(dataset)
    if landmarks_256.ndim != 3 or tuple(landmarks_256.shape[1:]) != (68, 2):
        raise UserError(f"landmarks must be (B, 68, 2), not {tuple(landmarks_256.shape)}")
    if tuple(labels.shape) != (landmarks_256.shape[0], len(aus)):
        raise UserError(
            f"labels must be (B, {len(aus)}) for AUs {aus}, not {tuple(labels.shape)}"
        )
    points = roi_points(landmarks_256, aus) * (size / LANDMARK_SPACE)  # (B, n, 2, 2)
    scale = sigma * size / SIGMA_SPACE
    grid = torch.arange(size, dtype=landmarks_256.dtype, device=landmarks_256.device)
    # The 2-D Gaussian is separable: exp(-(dx^2 + dy^2)/2s^2) = gx(x) * gy(y).
    gx = torch.exp(-((grid - points[..., 0:1]) ** 2) / (2 * scale**2))  # (B, n, 2, size)
    gy = torch.exp(-((grid - points[..., 1:2]) ** 2) / (2 * scale**2))
    windows = gy[..., :, None] * gx[..., None, :]  # (B, n, 2, size, size)
    windows = torch.where(windows < TARGET_FLOOR, torch.zeros_like(windows), windows)
    sign = torch.where(labels > 0, 1.0, -1.0).to(windows.dtype)
    return (windows.sum(dim=2) * sign[..., None, None]).clamp_(-1.0, 1.0)


def heatmap_targets(
    landmarks_256: np.ndarray,
    labels: np.ndarray,
    dataset: str | tuple[int, ...] | list[int],
    size: int = 128,
    sigma: float = 20.0,
) -> np.ndarray:
    """Targets (n_aus, size, size) float32 of one face: landmarks (68, 2), labels (n_aus,).

    The same math as `heatmap_targets_torch` (computed in float64, then rounded to float32).
    """
    import torch

    landmarks = torch.as_tensor(np.asarray(landmarks_256, dtype=np.float64))[None]
    label_row = torch.as_tensor(np.asarray(labels, dtype=np.float64))[None]
    targets = heatmap_targets_torch(landmarks, label_row, dataset, size=size, sigma=sigma)
    return targets[0].to(torch.float32).numpy()


def trainable_aus(dataset: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The AU numbers of a dataset name ('bp4d', 'disfa') or of an explicit AU tuple, checked
    to have ROI definitions (needed for heatmap targets)."""
    aus = au_set(dataset) if isinstance(dataset, str) else tuple(int(a) for a in dataset)
    if not aus:
        raise UserError("the AU set is empty")
    missing = [a for a in aus if a not in AU_ROIS]
    if missing:
        known = ", ".join(str(a) for a in sorted(AU_ROIS))
        raise UserError(
            f"no ROI definition for AU {', '.join(str(a) for a in missing)}:"
            f" heatmap targets exist for AUs {known}"
        )
    if len(set(aus)) != len(aus):
        raise UserError(f"the AU set {aus} lists an AU twice")
    return aus
