"""RoI inpainting: an auxiliary task on unlabeled faces (RTATL's regional task).

Square patches centred on randomly chosen AU ROI points (the points of the heatmap targets,
`fgnet_video.train.targets.roi_points`) are blanked in the encoder input (set to 0, mid-grey in
[-1, 1]); the generator's RGB image of the masked face, resized to the input size, must
reproduce the original face inside the patches:

    loss = sum(|resize(G(E(x * (1 - m)))) - x| * m) / (3 * sum(m))

Coordinates follow the heatmap targets: on an S x S image the pixel-index grid is
x, y = 0 .. S-1 and a 256-px landmark p sits at p * S / 256. A patch of side `side` (in
256-px units, so side * S / 256 image pixels) covers the pixels with |x - cx| < half and
|y - cy| < half, half = side * S / 512. Each image gets `count` distinct ROI points, drawn
uniformly from the distinct ROI definitions of the run's AUs (AUs 12, 14 and 15 share the
mouth corners, which are then one choice, not three).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fgnet_video.train.targets import AU_ROIS, LANDMARK_SPACE, roi_points


def distinct_roi_indices(aus: tuple[int, ...]) -> np.ndarray:
    """Indices into the flattened (n_aus * 2) ROI points of `aus` (as `roi_points` orders
    them) with one index per distinct definition (landmarks averaged, downward shift)."""
    first_index: dict[tuple[tuple[int, ...], float], int] = {}
    for k, au in enumerate(aus):
        rule = AU_ROIS[au]
        for j, landmarks in enumerate((rule.first, rule.second)):
            first_index.setdefault((landmarks, rule.shift_iod), 2 * k + j)
    return np.array(sorted(first_index.values()), dtype=np.int64)


def roi_masks(
    landmarks_256: torch.Tensor,
    aus: tuple[int, ...],
    size: int,
    side: float,
    count: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks (B, 1, size, size) float 0/1, centres (B, k, 2) as (x, y) image pixels) for
    landmarks (B, 68, 2) of 256-px aligned faces; k = min(count, distinct ROI points).

    `rng` picks the points, so a run draws the same masks for the same (seed, step)."""
    batch = landmarks_256.shape[0]
    choices = distinct_roi_indices(aus)
    points = roi_points(landmarks_256.float(), aus).reshape(batch, -1, 2)[:, choices]
    points = points * (size / LANDMARK_SPACE)
    k = min(count, len(choices))
    picks = np.argsort(rng.random((batch, len(choices))), axis=1)[:, :k]
    rows = torch.arange(batch, device=points.device)[:, None]
    centres = points[rows, torch.as_tensor(picks, device=points.device)]  # (B, k, 2)
    half = side * size / (2 * LANDMARK_SPACE)
    grid = torch.arange(size, dtype=centres.dtype, device=centres.device)
    inside_x = (grid - centres[..., 0:1]).abs() < half  # (B, k, size)
    inside_y = (grid - centres[..., 1:2]).abs() < half
    masks = (inside_y[..., :, None] & inside_x[..., None, :]).any(dim=1)  # (B, size, size)
    return masks[:, None].float(), centres


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size): area averaging when shrinking (the generator's
    1024-px image to the 256-px input), bilinear when enlarging."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    if image.shape[-1] > size:
        return F.interpolate(image, size=(size, size), mode="area")
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)


def masked_l1(reconstruction: torch.Tensor, original: torch.Tensor,
              masks: torch.Tensor) -> torch.Tensor:
    """Mean |reconstruction - original| over the masked pixels and the channels; the
    reconstruction is resized to the original's size first."""
    reconstruction = resize_image(reconstruction, original.shape[-1])
    masks = masks.to(original.dtype)
    total = ((reconstruction - original).abs() * masks).sum()
    return total / (masks.sum() * original.shape[1]).clamp(min=1.0)
