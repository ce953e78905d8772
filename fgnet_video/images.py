"""Reading still images as uint8 RGB arrays."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fgnet_video.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as a uint8 (H, W, 3) RGB array (PIL decode, as the release)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize with Lanczos (the filter of the FFHQ alignment's last step)."""
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def expand_image_paths(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders become their image files (recursive, sorted)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(source)
    return paths
