"""The pieces every training step shares: the supervised heatmap loss and the update."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fgnet_video.train.targets import heatmap_targets_torch


def heatmap_loss(raw: torch.Tensor, landmarks: torch.Tensor, labels: torch.Tensor,
                 aus: tuple[int, ...], *, heatmap_size: int, sigma: float) -> torch.Tensor:
    """The release's loss: mean over (B, n_aus, H, W) of (raw[:, :n_aus] - targets)^2, with
    targets from the landmarks and labels (`heatmap_targets_torch`)."""
    targets = heatmap_targets_torch(landmarks.float(), labels, aus, size=heatmap_size,
                                    sigma=sigma)
    return F.mse_loss(raw[:, : len(aus)].float(), targets)


def apply_gradients(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, grad_clip: float) -> torch.Tensor:
    """Backpropagate `loss` (scaled for fp16), clip the gradient norm of the optimizer's
    parameters to `grad_clip` and step; returns the norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return grad_norm
