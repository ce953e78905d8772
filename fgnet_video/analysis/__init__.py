"""One recording analysed: the streaming pipeline, tables, the sidecar, smoothing, the overlay, and
still images.
"""

from fgnet_video.lazy import lazy_exports

EXPORTS = {
    "analyze_video": "recording",
}
__all__ = list(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
