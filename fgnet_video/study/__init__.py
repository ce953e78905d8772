"""Many recordings: inputs and plans, sequential, local-worker and Ray executors sharing one model,
and status.
"""

from fgnet_video.lazy import lazy_exports

EXPORTS = {
    "analyze_inputs": "run",
}
__all__ = list(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
