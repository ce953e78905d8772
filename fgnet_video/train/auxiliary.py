"""Auxiliary tasks on unlabeled frames, mixed into supervised training (after RTATL).

Each iteration with `--aux` takes one labeled batch and one unlabeled batch and makes one
optimizer step on

    loss = heatmap MSE (labeled) + w_inpaint * RoI inpainting L1 + w_flow * flow EPE

- inpaint (`fgnet_video.train.inpaint`): patches at random AU ROI points of the unlabeled
  faces are blanked; the generator's RGB image of the masked face must restore them;
- flow (`fgnet_video.train.flow`): a small head on the interpreter's last hidden map predicts,
  from frame t alone, the optical flow to a frame about `gap` seconds later.

`AuxiliaryModel` runs the supervised pass and the auxiliary passes in one forward call, so
DistributedDataParallel sees one forward per backward. The masks of a step are drawn from a
generator seeded by (seed, step, rank): a resumed run draws the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fgnet_video.inference.precision import autocast
from fgnet_video.model.fgnet import FGNet
from fgnet_video.train.flow import FlowHead, endpoint_error
from fgnet_video.train.inpaint import masked_l1, roi_masks
from fgnet_video.train.step import apply_gradients, heatmap_loss
from fgnet_video.train.unlabeled import UnlabeledBatch


def loss_names(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the logged losses: 'loss' (supervised) then 'loss_<task>' per task."""
    return ("loss",) + tuple(f"loss_{task}" for task in tasks)


@dataclass(frozen=True)
class AuxSettings:
    """The auxiliary tasks of a run and their settings (see TrainOptions)."""

    tasks: tuple[str, ...]
    weight_inpaint: float
    weight_flow: float
    masks: int
    mask_size: float
    seed: int

    @property
    def inpaint(self) -> bool:
        return "inpaint" in self.tasks

    @property
    def flow(self) -> bool:
        return "flow" in self.tasks

    def mask_rng(self, step: int, rank: int) -> np.random.Generator:
        """The generator that draws the masks of global step `step` on `rank`."""
        return np.random.default_rng([self.seed, step, rank, 1])


class AuxiliaryModel(nn.Module):
    """FG-Net plus the flow head: forward(labeled, masked, clean) -> (raw heatmaps of the
    labeled faces, generator RGB of the masked faces or None, predicted flow of the clean
    faces or None)."""

    def __init__(self, model: FGNet, flow_head: FlowHead | None):
        super().__init__()
        self.model = model
        self.flow_head = flow_head

    def forward(self, images: torch.Tensor, masked: torch.Tensor | None = None,
                clean: torch.Tensor | None = None):
        raw = self.model(images)
        rgb = self.model.reconstruct(masked) if masked is not None else None
        flow = None
        if clean is not None:
            if self.flow_head is None:
                raise RuntimeError("the flow task needs a flow head")
            flow = self.flow_head(self.model.trace(clean).hidden)
        return raw, rgb, flow


def auxiliary_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    landmarks: torch.Tensor,
    labels: torch.Tensor,
    unlabeled: UnlabeledBatch,
    aus: tuple[int, ...],
    settings: AuxSettings,
    rng: np.random.Generator,
    *,
    heatmap_size: int,
    sigma: float,
    grad_clip: float,
    amp_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a labeled and an unlabeled batch (both on the device) through
    an AuxiliaryModel `net`; returns (the losses in `loss_names` order, gradient norm before
    clipping)."""
    masked = masks = None
    if settings.inpaint:
        masks, _ = roi_masks(unlabeled.landmarks, aus, unlabeled.images.shape[-1],
                             settings.mask_size, settings.masks, rng)
        masked = unlabeled.images * (1.0 - masks)
    clean = unlabeled.images if settings.flow else None
    with autocast(images.device, amp_dtype):
        raw, rgb, flow = net(images, masked, clean)
    losses = [heatmap_loss(raw, landmarks, labels, aus, heatmap_size=heatmap_size, sigma=sigma)]
    total = losses[0]
    if rgb is not None:
        losses.append(masked_l1(rgb.float(), unlabeled.images, masks))
        total = total + settings.weight_inpaint * losses[-1]
    if flow is not None:
        losses.append(endpoint_error(flow.float(), unlabeled.flows))
        total = total + settings.weight_flow * losses[-1]
    grad_norm = apply_gradients(total, optimizer, scaler, grad_clip)
    return torch.stack([loss.detach() for loss in losses]), grad_norm
