"""Where the weights come from and how they are read: known names, downloads into the cache,
checkpoint formats.
"""

from fgnet_video.lazy import lazy_exports

lazy_exports(globals(), {
    "load_weights": "store",
    "resolve_weights": "store",
    "ensure_weights": "store",
})
