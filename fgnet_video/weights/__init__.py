"""Where the weights come from and how they are read: known names, downloads into the cache,
checkpoint formats.
"""

from fgnet_video.lazy import lazy_exports

EXPORTS = {
    "load_weights": "store",
    "resolve_weights": "store",
    "ensure_weights": "store",
}
__all__ = list(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
