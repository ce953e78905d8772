"""FG-Net on a device: the engine that scores aligned faces, its speed switches, batch sizing,
devices and precisions, and the accuracy guard.
"""

from fgnet_video.lazy import lazy_exports

lazy_exports(globals(), {"InferenceEngine": "engine", "Prediction": "engine"})
