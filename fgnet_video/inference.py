"""Batched FG-Net inference on aligned faces: uint8 RGB images in, AU scores (and heatmaps) out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fgnet_video.devices import resolve_device
from fgnet_video.errors import UserError
from fgnet_video.model.checkpoints import LoadedModel
from fgnet_video.model.fgnet import decode_heatmaps

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def images_to_tensor(images: np.ndarray | Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 RGB faces (N, H, W, 3) -> float (N, 3, size, size) in [-1, 1] as x / 255 * 2 - 1
    (the release's normalisation); other sides are resized (bilinear, antialiased)."""
    array = images if isinstance(images, np.ndarray) else np.stack(images)
    batch = torch.from_numpy(np.ascontiguousarray(array))
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != torch.uint8:
        raise UserError(f"expected uint8 RGB images (N, H, W, 3), got {tuple(batch.shape)}")
    x = batch.permute(0, 3, 1, 2).float().div_(255.0).mul_(2.0).sub_(1.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on GPUs that support it (else fp16), fp32 on the CPU."""
    name = (name or "auto").lower()
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r} (use auto, {', '.join(PRECISIONS)})")
    if device.type == "cpu" and name == "fp16":
        raise UserError("fp16 is not supported on the CPU (use fp32 or bf16)")
    return PRECISIONS[name]


@dataclass
class Prediction:
    """Per-face AU scores (N, n_aus) (heatmap means in [-1, 1]) and, if kept, the clamped
    heatmaps (N, n_aus, H, H). An AU is active iff its score > 0."""

    scores: np.ndarray
    heatmaps: np.ndarray | None = None

    @property
    def active(self) -> np.ndarray:
        return (self.scores > 0).astype(np.uint8)


class InferenceEngine:
    """Runs a loaded FG-Net on batches of aligned faces on one device and precision."""

    def __init__(self, loaded: LoadedModel, device: str = "auto", precision: str = "auto",
                 batch_size: int = 16):
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {batch_size}")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.loaded = loaded
        self.n_aus = len(loaded.aus)
        self.batch_size = batch_size
        self.model = loaded.model.to(self.device).eval()

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.dtype,
                            enabled=self.dtype != torch.float32):
            raw = self.model(x)
        return decode_heatmaps(raw, self.n_aus)

    def predict(self, images: np.ndarray | Sequence[np.ndarray],
                keep_heatmaps: bool = False) -> Prediction:
        """AU scores for uint8 RGB aligned faces (N, H, W, 3), in batches of `batch_size`."""
        scores, maps = [], []
        for start in range(0, len(images), self.batch_size):
            x = images_to_tensor(images[start:start + self.batch_size], self.image_size)
            heatmaps, batch_scores = self._run(x)
            scores.append(batch_scores.cpu().numpy())
            if keep_heatmaps:
                maps.append(heatmaps.cpu().numpy())
        n_aus = self.n_aus
        return Prediction(
            np.concatenate(scores) if scores else np.zeros((0, n_aus), np.float32),
            (np.concatenate(maps) if maps else None) if keep_heatmaps else None,
        )
