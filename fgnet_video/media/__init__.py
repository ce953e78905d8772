"""Media in and out of the pipeline: video decoding with timestamps, still images."""

from fgnet_video.lazy import lazy_exports

lazy_exports(globals(), {"VideoReader": "video", "read_frames": "video", "probe": "video"})
