"""Single-image optical flow: an auxiliary task on unlabeled video frames (RTATL's temporal
task).

Target: the dense optical flow from aligned frame t to aligned frame t+d, computed by
OpenCV's DIS (medium preset) on the grey crops at their stored resolution (256 px from
preprocess), then averaged over the cells of the heatmap grid (area resampling) and scaled
to heatmap pixels (x by size / width, y by size / height). Convention: flow[:, y, x] = (u, v)
means the content at (x, y) in frame t is at (x + u, y + v) in frame t+d, so a face moving
right has u > 0.

Prediction: `FlowHead`, a 3x3 conv, ReLU and a 3x3 conv to 2 channels on the interpreter's
last hidden map (`PyramidInterpreter.hidden`) of frame t alone.

Loss: the end-point error, mean over pixels of ||prediction - target||_2.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from fgnet_video.atomic import atomic_path
from fgnet_video.errors import UserError

FLOW_HEAD_WIDTH = 32
_dis: cv2.DISOpticalFlow | None = None  # one per process (DataLoader workers get their own)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def flow_target(first_rgb: np.ndarray, second_rgb: np.ndarray, size: int) -> np.ndarray:
    """Flow (2, size, size) float32 in `size`-px units from `first_rgb` to `second_rgb`
    (uint8 (H, W, 3) crops of the same size)."""
    global _dis
    if first_rgb.shape != second_rgb.shape:
        raise ValueError(f"frame sizes differ: {first_rgb.shape} and {second_rgb.shape}")
    if _dis is None:
        _dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = _dis.calc(_grey(first_rgb), _grey(second_rgb), None)  # (H, W, 2) in crop pixels
    height, width = flow.shape[:2]
    interpolation = cv2.INTER_AREA if size <= min(height, width) else cv2.INTER_LINEAR
    flow = cv2.resize(flow, (size, size), interpolation=interpolation)
    flow *= np.array([size / width, size / height], dtype=np.float32)
    return np.ascontiguousarray(flow.transpose(2, 0, 1))


def endpoint_error(predicted: torch.Tensor, target: torch.Tensor,
                   eps: float = 1e-6) -> torch.Tensor:
    """Mean over (B, H, W) of sqrt(|predicted - target|^2 + eps) for flows (B, 2, H, W)."""
    return ((predicted - target).pow(2).sum(dim=1) + eps).sqrt().mean()


class FlowHead(nn.Module):
    """Flow (B, 2, H, W) from a hidden map (B, in_channels, H, W): conv3x3-ReLU-conv3x3."""

    def __init__(self, in_channels: int, width: int = FLOW_HEAD_WIDTH):
        super().__init__()
        self.in_channels, self.width = in_channels, width
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2, 3, padding=1),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden)


def save_flow_head(path: str | os.PathLike, head: FlowHead) -> None:
    """The head's weights as safetensors (its sizes in the metadata), written atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    metadata = {"kind": "fgnet-video flow head", "in_channels": str(head.in_channels),
                "width": str(head.width)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_flow_head(path: str | os.PathLike) -> FlowHead:
    """A FlowHead saved by `save_flow_head` (eval mode, CPU)."""
    try:
        with safe_open(str(path), framework="pt") as stream:
            metadata = stream.metadata() or {}
            tensors = {key: stream.get_tensor(key) for key in stream.keys()}  # noqa: SIM118
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable flow head ({exc})") from None
    if metadata.get("kind") != "fgnet-video flow head":
        raise UserError(f"{path}: not a flow head saved by fgnet-video train")
    head = FlowHead(int(metadata["in_channels"]), int(metadata["width"]))
    head.load_state_dict(tensors)
    return head.eval()
