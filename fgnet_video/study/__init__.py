"""Many recordings: inputs and plans, sequential, local-worker and Ray executors sharing one model,
and status.
"""

from fgnet_video.lazy import lazy_exports

lazy_exports(globals(), {"analyze_inputs": "run"})
