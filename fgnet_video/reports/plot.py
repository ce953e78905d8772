"""A picture of an analyze table: per person one panel, AUs as rows, time in seconds across.

In each AU's row, the spans where the AU is active are drawn as bars, and its score as a
trace around the row's centre line (the decision threshold, score 0; above the line means
active), scaled so that the person's largest absolute score reaches 90% of the row's
edge. A table in
OpenFace's layout has no scores: only the bars are drawn.

Long recordings are binned on one time grid shared by all panels: bins as wide as the
table's median frame spacing, widened so that there are at most `MAX_POINTS` of them; a
bin's decision is the maximum of its frames' decisions (active if any frame is) and its
score their mean. A bin without a frame of the person is a gap: no bar, the trace breaks.
Matplotlib runs with its Agg backend (no display needed).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fgnet_video.analysis.tables import decision_columns
from fgnet_video.atomic import atomic_path
from fgnet_video.errors import UserError
from fgnet_video.reports.summary import as_au_table, median_spacing, person_key, read_au_table

MAX_POINTS = 2000
# At most this many panels: a table with thousands of face tracks (no person ids) would
# take minutes and gigabytes to draw one panel each; the persons seen in the most frames
# are drawn, and the figure and a warning say so.
MAX_PERSONS = 24
ROW_HALF = 0.4  # half the height of an AU's row, in row units
TRACE_REACH = 0.9  # the largest absolute score is drawn this far from the centre to the edge
IMAGE_SUFFIXES = (".png", ".pdf", ".svg")


def time_grid(times: np.ndarray, max_points: int = MAX_POINTS) -> tuple[float, float, int]:
    """(start, width, count) of the bins: centred on start + k * width, k < count, width
    the median spacing of `times` widened so that count <= max_points."""
    start, span = float(np.min(times)), float(np.ptp(times))
    width = max(median_spacing(times), span / max(max_points - 1, 1))
    width = width if width > 0 else 1.0
    return start, width, int(round(span / width)) + 1


def binned(rows: pd.DataFrame, columns: list[str], grid: tuple[float, float, int],
           how: str) -> np.ndarray:
    """(count, len(columns)) per-bin values of `rows` (`how`: 'max' or 'mean'); NaN for a
    bin without a row."""
    start, width, count = grid
    index = np.clip(np.round((rows["timestamp"].to_numpy(np.float64) - start) / width),
                    0, count - 1).astype(np.int64)
    values = rows[columns].astype(np.float64).groupby(index).agg(how)
    out = np.full((count, len(columns)), np.nan)
    out[values.index.to_numpy()] = values.to_numpy()
    return out


def _spans(active: np.ndarray, grid: tuple[float, float, int]) -> list[tuple[float, float]]:
    """(left, width) of each run of active bins, for `broken_barh`."""
    start, width, _ = grid
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    firsts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(start + (a - 0.5) * width, (b - a) * width) for a, b in zip(firsts, ends,
                                                                          strict=True)]


def plot_table(table: pd.DataFrame | str | os.PathLike, max_points: int = MAX_POINTS):
    """The matplotlib Figure of an analyze table (or the path of one): one panel (Axes) per
    person, in the order of `summary.person_key` (at most MAX_PERSONS: those seen in the
    most frames, with a warning). UserError for a table that is not analyze's or has no
    face."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    table = as_au_table(table) if isinstance(table, pd.DataFrame) else read_au_table(table)
    key = person_key(table)
    aus = decision_columns(table.columns)
    scores = [f"{au}_score" for au in aus]
    has_scores = all(name in table.columns for name in scores)
    faces = table[(table["success"] == 1) & table[key].notna()]
    if faces.empty:
        raise UserError("no face in the table: nothing to plot")
    grid = time_grid(table["timestamp"].to_numpy(np.float64), max_points)
    start, width, count = grid
    centres = start + width * np.arange(count)
    persons = list(faces.groupby(key, sort=True))
    if len(persons) > MAX_PERSONS:
        kept = sorted(persons, key=lambda item: -len(item[1]))[:MAX_PERSONS]
        note = (f"{MAX_PERSONS} of {len(persons)} {key} values shown: those seen in the most "
                "frames")
        warnings.warn(note, stacklevel=2)
        persons = sorted(kept, key=lambda item: item[0])
    else:
        note = None
    colors = matplotlib.colormaps["tab10"].colors
    figure = Figure(figsize=(11, 0.8 + len(persons) * (0.9 + 0.32 * len(aus))),
                    layout="constrained")
    axes = figure.subplots(len(persons), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (person, rows) in zip(axes, persons, strict=True):
        decisions = binned(rows, aus, grid, "max")
        trace = binned(rows, scores, grid, "mean") if has_scores else None
        scale = np.nanmax(np.abs(trace)) if trace is not None else 0.0
        for row in range(len(aus)):
            color = colors[row % len(colors)]
            ax.axhline(row, color="0.75", lw=0.6, ls=":", zorder=0)
            ax.broken_barh(_spans(decisions[:, row] == 1, grid),
                           (row - ROW_HALF, 2 * ROW_HALF), facecolor=color, alpha=0.35,
                           edgecolor="none")
            if trace is not None and scale > 0:
                reach = TRACE_REACH * ROW_HALF / scale
                ax.plot(centres, row - reach * trace[:, row], color=color, lw=1.2)
        lines = (f"; lines: score (dotted centre = 0, {TRACE_REACH:.0%} of the way to the "
                 f"bar edge = {scale:.3g})" if trace is not None and scale > 0 else "")
        ax.set_title(f"{key} {person}: {len(rows)} frames; bars: AU active{lines}",
                     loc="left", fontsize=10)
        ax.set_yticks(range(len(aus)), aus, fontsize=8)
        ax.set_ylim(len(aus) - 0.5, -0.5)
        ax.set_xlim(start - width / 2, start + (count - 0.5) * width)
        ax.grid(axis="x", color="0.9", lw=0.5)
    axes[-1].set_xlabel("time (s)")
    if note is not None:
        figure.suptitle(note, fontsize=10)
    return figure


def save_plot(figure, path: str | os.PathLike) -> Path:
    """Write `figure` atomically as PNG, PDF or SVG (by suffix; UserError for another)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: give a {', '.join(IMAGE_SUFFIXES)} file to write the plot to")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=suffix[1:], dpi=120)
    return path
