"""Person-level results of an analyze table: per person and AU, how much was seen, how often
the AU was active, and its events.

The table is analyze's, in either column layout (`AU01` decisions, or OpenFace's `AU01_c`;
`read_au_table` reads both, as CSV or Parquet by suffix). The person of a row is its
`person_key` column: `person_id` when the table has one, else `person`, else `face_id`.
Only rows with a face (`success` 1 and a person) belong to a person.

Definitions, per person, with that person's rows sorted by time (t_1 < ... < t_n):

- the frame interval T = the median spacing of all the table's timestamps (the sampling:
  1/fps of the video, or of `--fps`; 0 for a table of one frame);
- frame duration d_i = min(t_{i+1} - t_i, T), and d_n = T: a frame counts one frame
  interval, and time without the person's face (not detected, out of view) is not counted;
- `frames` = n, `seconds` = sum of d_i;
- `active_share` = share of the n frames whose decision is 1 (a missing decision counts as
  inactive);
- a run = maximal sequence of consecutive rows with decision 1 and no gap between them
  (t_{i+1} - t_i at most GAP_INTERVALS frame intervals), lasting from the onset t_i of its
  first frame to the end t_j + d_j of its last;
- events: runs, in order, with every two consecutive ones joined when the gap between them
  (next onset - previous end) is at most `bridge` seconds (`EventSettings`), then those
  shorter than `min_event` seconds dropped (comparisons allow 1 ns of rounding);
- `events` = their number; `mean_event_s`, `median_event_s` = their mean and median
  duration; `first_onset_s`, `last_onset_s` = onset of the first and last (NaN without
  events).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fgnet_video.analysis.tables import OPENFACE_PRESENCE, decision_columns, write_table
from fgnet_video.atomic import write_json
from fgnet_video.errors import UserError
from fgnet_video.options import EventSettings
from fgnet_video.paths import special_file_kind
from fgnet_video.settings import split_settings

PERSON_KEYS = ("person_id", "person", "face_id")
REQUIRED_COLUMNS = ("frame", "timestamp", "success")
ROUNDING = 1e-9  # seconds: how far apart two times may be and still compare equal
SUMMARY_COLUMNS = ["frames", "seconds", "active_share", "events", "mean_event_s",
                   "median_event_s", "first_onset_s", "last_onset_s"]
PERSON_COLUMNS = ("frames", "seconds")  # the same for every AU of a person


def person_key(table: pd.DataFrame) -> str:
    """The column naming the person of a row: person_id, else person, else face_id (the
    face track: OpenFace-layout tables and those of older versions have no person ids)."""
    for name in PERSON_KEYS:
        if name in table.columns:
            return name
    raise UserError(f"no person column (need one of {', '.join(PERSON_KEYS)})")


def as_au_table(table: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """`table` checked as an analyze table and in our layout (OpenFace's `AU01_c` columns
    renamed `AU01`). UserError, naming `source`, for a table without rows or without the
    columns of an analyze table."""
    ours = {c: c.removesuffix(OPENFACE_PRESENCE) for c in table.columns
            if c.endswith(OPENFACE_PRESENCE)}
    table = table.rename(columns={c: au for c, au in ours.items() if decision_columns([au])})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if not any(key in table.columns for key in PERSON_KEYS):
        missing.append("face_id")
    if not decision_columns(table.columns):
        missing.append("AU decision columns (AU01, ... or AU01_c, ...)")
    if missing:
        raise UserError(f"{source}: not an fgnet-video analyze table (missing: "
                        f"{', '.join(missing)})")
    if table.empty:
        raise UserError(f"{source}: the table has no rows")
    times = pd.to_numeric(table["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(times).all():
        row = int(np.flatnonzero(~np.isfinite(times))[0])
        raise UserError(f"{source}: row {row + 1} has no timestamp (a number of seconds)")
    key = person_key(table)
    ids = table[key]
    if pd.api.types.is_float_dtype(ids) and (ids.dropna() % 1 == 0).all():
        table = table.assign(**{key: ids.astype("Int64")})  # a CSV's ids with empty cells
    return table


def read_au_table(path: str | os.PathLike) -> pd.DataFrame:
    """An analyze table from a CSV or Parquet file (by suffix), checked (`as_au_table`)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: is {special_file_kind(mode)}, not a regular table file")
    try:
        table = (pd.read_parquet(path) if path.suffix.lower() == ".parquet"
                 else pd.read_csv(path))
    except ImportError:
        raise UserError("reading parquet needs pyarrow: pip install pyarrow") from None
    except (ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable table ({reason})") from None
    return as_au_table(table, str(path))


def median_spacing(times: np.ndarray) -> float:
    """Median gap between the distinct sorted `times` (0 with fewer than two)."""
    distinct = np.unique(times)
    return float(np.median(np.diff(distinct))) if len(distinct) > 1 else 0.0


# A gap between a person's frames wider than this many frame intervals means frames without
# them (not detected, out of view): their runs break there (jitter of variable frame rates
# stays below it).
GAP_INTERVALS = 1.5


def frame_durations(times: np.ndarray, interval: float) -> np.ndarray:
    """How long each frame at sorted `times` counts as seen: one frame `interval` (the
    table's median spacing), less when the next frame comes sooner; time without the person
    is not counted."""
    gaps = np.append(np.diff(times), interval)
    return np.minimum(gaps, interval)


def events(times: np.ndarray, durations: np.ndarray, active: np.ndarray,
           settings: EventSettings | None = None) -> list[tuple[float, float]]:
    """The (onset, end) seconds of the events of one AU of one person (frames at sorted
    `times` lasting `durations`, `active` 0/1): runs of active frames without a gap between
    them (GAP_INTERVALS), each from its first frame's time to its last frame's end, joined
    across gaps of at most `settings.bridge` s, then those shorter than `settings.min_event`
    s dropped."""
    settings = settings or EventSettings()
    active = np.asarray(active, dtype=bool)
    joined: list[tuple[float, float]] = []
    limit = GAP_INTERVALS * (float(np.max(durations)) if len(durations) else 0.0)
    for i in np.flatnonzero(active):
        onset, end = float(times[i]), float(times[i] + durations[i])
        continues = (i > 0 and active[i - 1] and times[i] - times[i - 1] <= limit + ROUNDING)
        if joined and (continues or onset - joined[-1][1] <= settings.bridge + ROUNDING):
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((onset, end))
    return [(a, b) for a, b in joined if b - a >= settings.min_event - ROUNDING]


def _au_summary(active: np.ndarray, times: np.ndarray, durations: np.ndarray,
                settings: EventSettings) -> dict[str, float]:
    found = events(times, durations, active, settings)
    lengths = np.array([end - onset for onset, end in found])
    return {"frames": len(times), "seconds": float(durations.sum()),
            "active_share": float(active.mean()), "events": len(found),
            "mean_event_s": float(lengths.mean()) if found else math.nan,
            "median_event_s": float(np.median(lengths)) if found else math.nan,
            "first_onset_s": found[0][0] if found else math.nan,
            "last_onset_s": found[-1][0] if found else math.nan}


def summarize(table: pd.DataFrame | str | os.PathLike, **options: Any) -> pd.DataFrame:
    """Per person and AU (one row each, persons in order, AUs in the table's order): the
    person key column (`person_key`), `au`, then `SUMMARY_COLUMNS` as defined in this
    module's docstring. `table` is an analyze table or the path of one; `options` are the
    fields of `EventSettings` (min_event, bridge)."""
    (given,) = split_settings(options, EventSettings)
    settings = EventSettings(**given)
    table = (as_au_table(table) if isinstance(table, pd.DataFrame) else read_au_table(table))
    key = person_key(table)
    aus = decision_columns(table.columns)
    faces = table[(table["success"] == 1) & table[key].notna()]
    if faces.empty:
        raise UserError("no face in the table: nothing to summarise")
    interval = median_spacing(table["timestamp"].to_numpy(dtype=np.float64))
    records = []
    for person, rows in faces.sort_values([key, "timestamp"]).groupby(key, sort=True):
        times = rows["timestamp"].to_numpy(dtype=np.float64)
        durations = frame_durations(times, interval)
        for au in aus:
            active = rows[au].fillna(0).to_numpy(dtype=np.int8) == 1
            records.append({key: person, "au": au,
                            **_au_summary(active, times, durations, settings)})
    return pd.DataFrame.from_records(records, columns=[key, "au", *SUMMARY_COLUMNS])


def summary_json(summary: pd.DataFrame, settings: EventSettings | None = None) -> dict:
    """The numbers of `summarize` nested per person: {"person_key", "settings", "persons":
    {id: {"frames", "seconds", "aus": {AU: {active_share, events, ...}}}}}; NaN is null."""
    key = summary.columns[0]
    persons: dict[str, dict] = {}
    for record in summary.to_dict("records"):
        values = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                  for k, v in record.items()}
        person = persons.setdefault(str(values[key]),
                                    {name: values[name] for name in PERSON_COLUMNS} | {"aus": {}})
        person["aus"][values["au"]] = {name: values[name] for name in SUMMARY_COLUMNS
                                       if name not in PERSON_COLUMNS}
    settings = settings or EventSettings()
    return {"person_key": key,
            "settings": {"min_event": settings.min_event, "bridge": settings.bridge},
            "persons": persons}


def write_summary(summary: pd.DataFrame, path: str | os.PathLike,
                  settings: EventSettings | None = None) -> list[Path]:
    """Write `summary` as CSV at `path` and as JSON (`summary_json`) beside it
    (`<stem>.json`), each atomically; returns both paths."""
    path = Path(path)
    json_path = path.with_suffix(".json")
    write_table(summary, path, "csv")
    write_json(json_path, summary_json(summary, settings))
    return [path, json_path]

