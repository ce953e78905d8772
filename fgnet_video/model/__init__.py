"""FG-Net in PyTorch: pSp encoder, StyleGAN2 generator features, Pyramid CNN Interpreter."""

from fgnet_video.model.config import FULL, TINY, FGNetConfig, preset
from fgnet_video.model.fgnet import FGNet, build_model, decode_heatmaps

__all__ = ["FGNet", "FGNetConfig", "FULL", "TINY", "build_model", "decode_heatmaps", "preset"]
