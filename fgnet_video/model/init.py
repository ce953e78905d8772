"""Randomly initialised FG-Net weights (for tests, benchmarks and training from scratch)."""

from __future__ import annotations

import torch

from fgnet_video.model.config import FGNetConfig
from fgnet_video.model.fgnet import FGNet

LATENT_AVG_SAMPLES = 4096


@torch.no_grad()
def random_model(config: FGNetConfig, seed: int = 0) -> FGNet:
    """An FG-Net with seeded random weights; `latent_avg` is the mean of the mapping MLP over
    N(0, I) inputs, as StyleGAN2 defines the average latent."""
    torch.manual_seed(seed)
    model = FGNet(config).eval()
    z = torch.randn(LATENT_AVG_SAMPLES, config.style_dim)
    model.latent_avg.copy_(model.g_all.mapping(z).mean(dim=0))
    return model
