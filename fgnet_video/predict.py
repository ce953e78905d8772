"""AU prediction on still images of faces (already aligned by the FFHQ recipe)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fgnet_video.atomic import atomic_path
from fgnet_video.images import read_rgb, resize_rgb
from fgnet_video.inference import InferenceEngine
from fgnet_video.outputs import au_table

ALIGNED_SIZE = 256


def load_aligned(paths: Sequence[Path], note: Callable[[str], None] = lambda _: None) -> np.ndarray:
    """Aligned faces as uint8 (N, 256, 256, 3); other sizes are resized, with a note."""
    faces = []
    for path in paths:
        image = read_rgb(path)
        if image.shape[:2] != (ALIGNED_SIZE, ALIGNED_SIZE):
            note(f"note: {path} is {image.shape[1]}x{image.shape[0]}, resized to "
                 f"{ALIGNED_SIZE}x{ALIGNED_SIZE}")
            image = resize_rgb(image, ALIGNED_SIZE)
        faces.append(image)
    return np.stack(faces)


def predict_aligned(
    paths: Sequence[Path], engine: InferenceEngine, keep_heatmaps: bool = False,
    note: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """One row per image: `image`, then AU01_score, AU01, ...; plus the clamped heatmaps."""
    prediction = engine.predict(load_aligned(paths, note), keep_heatmaps=keep_heatmaps)
    table = au_table(prediction.scores, engine.loaded.aus)
    table.insert(0, "image", [str(p) for p in paths])
    return table, prediction.heatmaps


def save_heatmaps(path: str | os.PathLike, heatmaps: np.ndarray, images: Sequence[str],
                  aus: Sequence[int]) -> None:
    """npz with `heatmaps` (N, n_AUs, H, H) float32 clamped, `images` (names), `aus`."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, heatmaps=heatmaps.astype(np.float32),
                                images=np.asarray(images), aus=np.asarray(aus))
