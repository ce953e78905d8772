"""AU prediction on still images of faces (already aligned by the FFHQ recipe)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fgnet_video.analysis.tables import au_table
from fgnet_video.atomic import atomic_path
from fgnet_video.inference.engine import InferenceEngine
from fgnet_video.media.images import read_rgb, resize_rgb

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


def align_photos(paths: Sequence[Path], note: Callable[[str], None] = lambda _: None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The largest face of each photo, FFHQ-aligned the release's way (exact recipe), and a
    mask of the photos where a face was found (the others get a blank crop)."""
    from fgnet_video.face.align import ffhq_align
    from fgnet_video.face.still import ReleaseAligner

    aligner = ReleaseAligner(ALIGNED_SIZE)
    faces, found = [], []
    for path in paths:
        image = read_rgb(path)
        face = aligner.largest_face(image)
        found.append(face is not None)
        if face is None:
            note(f"note: {path}: no face found")
            faces.append(np.zeros((ALIGNED_SIZE, ALIGNED_SIZE, 3), np.uint8))
        else:
            faces.append(ffhq_align(image, face[1], size=ALIGNED_SIZE, method="exact").image)
    return np.stack(faces), np.array(found)


def predict_images(
    paths: Sequence[Path], engine: InferenceEngine, aligned: bool = True,
    keep_heatmaps: bool = False, note: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """One row per image: `image`, then AU01_score, AU01, ...; plus the clamped heatmaps.

    Unaligned photos are aligned first and the table gains a `success` column after
    `image`: 0 (with empty scores and NaN heatmaps) where no face was found.
    """
    if aligned:
        faces, found = load_aligned(paths, note), None
    else:
        faces, found = align_photos(paths, note)
    prediction = engine.predict(faces, keep_heatmaps=keep_heatmaps)
    scores, heatmaps = prediction.scores.astype(np.float64), prediction.heatmaps
    if found is not None:
        scores[~found] = np.nan
        if heatmaps is not None:
            heatmaps[~found] = np.nan
    table = au_table(scores, engine.loaded.aus)
    if found is not None:
        table.insert(0, "success", found.astype(np.int64))
    table.insert(0, "image", [str(p) for p in paths])
    return table, heatmaps


def save_heatmaps(path: str | os.PathLike, heatmaps: np.ndarray, images: Sequence[str],
                  aus: Sequence[int]) -> None:
    """npz with `heatmaps` (N, n_AUs, H, H) float32 clamped, `images` (names), `aus`."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, heatmaps=heatmaps.astype(np.float32),
                                images=np.asarray(images), aus=np.asarray(aus))
