"""Output tables: AU columns in the OpenFace style (`AU01_score`, `AU01`) and their writers.

`au_table` is the one builder of AU columns (analyze's rows, predict's table),
`in_layout` the one map from analyze's table to another column layout (OpenFace's) and
`table_format` the one rule for a table's format.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fgnet_video.atomic import atomic_path
from fgnet_video.aus import au_name
from fgnet_video.errors import UserError
from fgnet_video.options import TABLE_FORMATS, TABLE_LAYOUTS

DECISION_COLUMN = re.compile(r"AU\d+")  # an AU's 0/1 column in our layout: AU01, AU12, ...
OPENFACE_COLUMNS = ["frame", "face_id", "timestamp", "confidence", "success"]
OPENFACE_PRESENCE = "_c"  # OpenFace's suffix of an AU presence (0/1) column: AU01_c


def au_columns(aus: Sequence[int]) -> list[str]:
    """Per AU, its score column then its 0/1 column: AU01_score, AU01, AU02_score, ..."""
    return [name for au in aus for name in (f"{au_name(au)}_score", au_name(au))]


def au_table(scores: np.ndarray, aus: Sequence[int]) -> pd.DataFrame:
    """Scores (N, n_aus) -> DataFrame with `au_columns(aus)`: per AU the score (float64) and
    the decision, a nullable Int64 that is 1 iff the score > 0. A NaN score means "no face":
    its decision is <NA> (an empty cell in CSV), never a guessed 0."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, len(aus))
    data = {}
    for k, au in enumerate(aus):
        column = scores[:, k]
        decision = pd.array((column > 0).astype(np.int64), dtype="Int64")
        decision[np.isnan(column)] = pd.NA
        data[f"{au_name(au)}_score"] = column
        data[au_name(au)] = decision
    return pd.DataFrame(data, columns=au_columns(aus))


def decision_columns(columns: Sequence[str]) -> list[str]:
    """The AU decision columns among `columns` (AU01, AU02, ...), in their order."""
    return [name for name in columns if DECISION_COLUMN.fullmatch(name)]


def in_layout(table: pd.DataFrame, layout: str) -> pd.DataFrame:
    """analyze's table (`fgnet_video.analysis.stream.table_columns`) in a column layout: `fgnet`
    is the table itself; `openface` is OpenFace FeatureExtraction's layout, `frame, face_id,
    timestamp, confidence, success`, then per AU its decision as `AU01_c` (presence, 0/1,
    empty without a face). FG-Net has no intensity, so there are no `_r` columns and the
    scores are left out."""
    if layout not in TABLE_LAYOUTS:
        raise UserError(f"unknown columns {layout!r} (use {' or '.join(TABLE_LAYOUTS)})")
    if layout == "fgnet":
        return table
    aus = decision_columns(table.columns)
    return table[[*OPENFACE_COLUMNS, *aus]].rename(
        columns={au: f"{au}{OPENFACE_PRESENCE}" for au in aus})


def table_format(path: str | os.PathLike, requested: str | None = None) -> str:
    """The format a table at `path` is written in: `requested` when given, else parquet for
    a .parquet suffix and csv otherwise."""
    fmt = (requested or ("parquet" if Path(path).suffix.lower() == ".parquet" else "csv"))
    fmt = fmt.lower()
    if fmt not in TABLE_FORMATS:
        raise UserError(f"unknown output format {fmt!r} (use {' or '.join(TABLE_FORMATS)})")
    return fmt


def write_table(table: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write a table atomically as CSV or Parquet (by `fmt` or the file suffix)."""
    path = Path(path)
    fmt = table_format(path, fmt)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False, float_format="%.6f")
        else:
            try:
                table.to_parquet(tmp, index=False)
            except ImportError:
                raise UserError("parquet output needs pyarrow: pip install pyarrow") from None
    return path
