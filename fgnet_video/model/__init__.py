"""FG-Net in PyTorch: pSp encoder, StyleGAN2 generator features, Pyramid CNN Interpreter.
(Re-exported lazily: `fgnet_video.model.config` can be read without torch.)"""

from fgnet_video.lazy import lazy_exports

lazy_exports(globals(), {
    "FGNet": "fgnet", "build_model": "fgnet", "decode_heatmaps": "fgnet",
    "FGNetConfig": "config", "FULL": "config", "TINY": "config", "preset": "config",
})
