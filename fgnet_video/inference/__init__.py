"""FG-Net on a device: the engine that scores aligned faces, its speed switches, batch sizing,
devices and precisions, and the accuracy guard.
"""

from fgnet_video.lazy import lazy_exports

EXPORTS = {
    "InferenceEngine": "engine",
    "Prediction": "engine",
}
__all__ = list(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
