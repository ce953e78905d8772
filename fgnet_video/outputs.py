"""Output tables: AU columns in the OpenFace style (`AU01_score`, `AU01`) and their writers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fgnet_video.atomic import atomic_path
from fgnet_video.aus import au_name
from fgnet_video.errors import UserError

OUTPUT_FORMATS = ("csv", "parquet")


def au_columns(aus: Sequence[int]) -> list[str]:
    """Per AU, its score column then its 0/1 column: AU01_score, AU01, AU02_score, ..."""
    return [name for au in aus for name in (f"{au_name(au)}_score", au_name(au))]


def au_table(scores: np.ndarray, aus: Sequence[int]) -> pd.DataFrame:
    """Scores (N, n_aus) -> DataFrame with `au_columns(aus)`; an AU is 1 iff its score > 0."""
    scores = np.asarray(scores, dtype=np.float64)
    data = {}
    for k, au in enumerate(aus):
        data[f"{au_name(au)}_score"] = scores[:, k]
        data[au_name(au)] = (scores[:, k] > 0).astype(np.int64)
    return pd.DataFrame(data, columns=au_columns(aus))


def write_table(table: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write a table atomically as CSV or Parquet (by `fmt` or the file suffix)."""
    path = Path(path)
    fmt = (fmt or ("parquet" if path.suffix.lower() == ".parquet" else "csv")).lower()
    if fmt not in OUTPUT_FORMATS:
        raise UserError(f"unknown output format {fmt!r} (use {' or '.join(OUTPUT_FORMATS)})")
    with atomic_path(path) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False, float_format="%.6f")
        else:
            try:
                table.to_parquet(tmp, index=False)
            except ImportError:
                raise UserError("parquet output needs pyarrow: pip install pyarrow") from None
    return path
