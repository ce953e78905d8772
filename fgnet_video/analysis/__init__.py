"""One recording analysed: the streaming pipeline, tables, the sidecar, smoothing, the overlay, and
still images.
"""

from fgnet_video.lazy import lazy_exports

lazy_exports(globals(), {"analyze_video": "recording"})
