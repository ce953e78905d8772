"""Reports on results and on the machine: AU summaries, plots, doctor."""

from fgnet_video.lazy import lazy_exports

lazy_exports(globals(), {"summarize": "summary", "plot_table": "plot"})
