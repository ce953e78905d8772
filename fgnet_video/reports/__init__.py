"""Reports on results and on the machine: AU summaries, plots, doctor."""

from fgnet_video.lazy import lazy_exports

EXPORTS = {
    "summarize": "summary",
    "plot_table": "plot",
}
__all__ = list(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
