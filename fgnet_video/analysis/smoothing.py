"""`analyze --smooth SECONDS`: each face track's 0/1 AU decisions filtered over time.

The rule, for a face row of track `face_id` at time t and one AU: the votes are that
track's raw decisions at times t' with t - S/2 <= t' <= t + S/2 (the row itself included;
timestamps, so a variable frame rate is handled; 1 ns of slack absorbs float rounding).
The smoothed decision is 1 when more votes are 1 than 0, 0 when more are 0 than 1, and the
raw decision on a tie. At a track's start and end the window is simply cut by the track's
ends (no padding), and frames where the track is absent give no votes. A missing decision
neither votes nor changes. Rows without a face (success=0) pass through untouched, scores
are never changed, and raw decisions stay recoverable as `score > 0`
(`fgnet_video.analysis.tables.au_table`).

`DecisionSmoother` is the streaming stage between `fgnet_video.analysis.stream.rows_for` and the
writers: row groups go in in frame order and come out in the same order, smoothed, as soon
as every window they need is known, so it holds about S seconds of rows whatever the
recording's length.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fgnet_video.analysis.tables import decision_columns

SLACK = 1e-9  # seconds: timestamps are rounded to 1 us, so this only absorbs float error


def majority(times: np.ndarray, decisions: np.ndarray, at: np.ndarray,
             raw: np.ndarray, half: float) -> np.ndarray:
    """Majority of one track's decisions in [t - half, t + half] for each t in `at`.

    times: (n,) sorted times of the track's rows; decisions: (n, k) float 0/1 with NaN for a
    missing decision; at: (m,) times to decide at, with raw: (m, k) their own decisions
    (returned where the votes tie, NaN stays NaN). Returns (m, k) float.
    """
    valid = ~np.isnan(decisions)
    zero = np.zeros((1, decisions.shape[1]))
    ones = np.vstack([zero, np.cumsum(np.where(valid, decisions, 0.0), axis=0)])
    votes = np.vstack([zero, np.cumsum(valid, axis=0)])
    lo = np.searchsorted(times, at - half - SLACK, side="left")
    hi = np.searchsorted(times, at + half + SLACK, side="right")
    n_ones = ones[hi] - ones[lo]
    n_zeros = (votes[hi] - votes[lo]) - n_ones
    smoothed = np.where(n_ones > n_zeros, 1.0, np.where(n_zeros > n_ones, 0.0, raw))
    return np.where(np.isnan(raw), np.nan, smoothed)


class DecisionSmoother:
    """Streaming majority filter of the AU decision columns (`AU01`, ...) of analyze's rows
    (`fgnet_video.analysis.stream.table_columns`), per `face_id`, over a centred window of
    `seconds` (the rule is in the module docstring).

    `push(rows)` takes the next row group (frames in order; their timestamps increase, as
    `fgnet_video.media.video.VideoReader` yields them) and returns the rows that are now final: a
    row at time t is final once a row with a time > t + seconds/2 has arrived (and every row
    before it is final). `finish()` returns the rest. Together they return every row once,
    in input order, with the same columns and dtypes. Held in between: the rows not yet
    final plus the last seconds/2 of released rows (their look-behind).
    """

    def __init__(self, seconds: float):
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"smoothing window must be a number of seconds >= 0, got {seconds}")
        self.half = seconds / 2
        self._rows: pd.DataFrame | None = None  # released look-behind rows, then pending ones
        self._released = 0  # how many of the leading rows of `_rows` were returned already
        self._latest = -math.inf

    @property
    def held(self) -> int:
        """How many rows are held now (look-behind and pending)."""
        return 0 if self._rows is None else len(self._rows)

    def push(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Add a row group; return the rows that became final (possibly none)."""
        if len(rows):
            self._latest = max(self._latest, float(rows["timestamp"].max()))
        self._rows = rows if self._rows is None else pd.concat([self._rows, rows],
                                                               ignore_index=True)
        times = self._rows["timestamp"].to_numpy(np.float64)
        return self._release(_prefix(times < self._latest - self.half - SLACK))

    def finish(self) -> pd.DataFrame:
        """Every row not returned yet (the stream has ended, so all windows are known); the
        smoother then holds nothing."""
        if self._rows is None:
            return pd.DataFrame()
        out = self._release(len(self._rows))
        self._rows, self._released = None, 0
        return out

    def _release(self, end: int) -> pd.DataFrame:
        """Smooth and return rows [released, end) of the buffer; then drop the leading rows
        that lie before every later row's window (rows after `end` are pending, and rows
        still to come have times >= the latest seen)."""
        table = self._rows
        out = self._smoothed(table, self._released, end)
        times = table["timestamp"].to_numpy(np.float64)
        horizon = (times[end] if end < len(times) else self._latest) - self.half - SLACK
        keep = _prefix(times[:end] < horizon)
        self._rows = table.iloc[keep:].reset_index(drop=True)
        self._released = end - keep
        return out

    def _smoothed(self, table: pd.DataFrame, start: int, end: int) -> pd.DataFrame:
        """Rows [start, end) of `table` with their decisions smoothed over `table`'s rows."""
        out = table.iloc[start:end].reset_index(drop=True)
        columns = decision_columns(table.columns)
        if not len(out):
            return out
        faces = (table["success"] == 1).fillna(False).to_numpy(bool)
        ids = table["face_id"].to_numpy(dtype=np.float64, na_value=np.nan)
        times = table["timestamp"].to_numpy(np.float64)
        decisions = table[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        result = decisions[start:end].copy()
        target = np.zeros(len(table), bool)
        target[start:end] = faces[start:end]
        for face_id in np.unique(ids[target]):
            track = np.flatnonzero(faces & (ids == face_id))
            track = track[np.argsort(times[track], kind="stable")]
            mine = target & (ids == face_id)
            result[mine[start:end]] = majority(times[track], decisions[track], times[mine],
                                               decisions[mine], self.half)
        for k, name in enumerate(columns):
            out[name] = pd.array(result[:, k], dtype="Float64").astype("Int64")
        return out


def _prefix(mask: np.ndarray) -> int:
    """Length of the leading run of True in `mask`."""
    return len(mask) if mask.all() else int(np.argmin(mask))
