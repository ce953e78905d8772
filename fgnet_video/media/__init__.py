"""Media in and out of the pipeline: video decoding with timestamps, still images."""

from fgnet_video.lazy import lazy_exports

EXPORTS = {
    "VideoReader": "video",
    "read_frames": "video",
    "probe": "video",
}
__all__ = list(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
