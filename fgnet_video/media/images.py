"""Reading still images as uint8 RGB arrays."""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fgnet_video.errors import UserError
from fgnet_video.paths import special_file_kind

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_rgb(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """The image at `path` as a uint8 (H, W, 3) RGB array (PIL decode, as the release); with
    `max_side`, scaled down (aspect kept, decoded at a reduced size where the format allows)
    so that neither side exceeds it.

    Raises UserError for a missing file, one that is not a regular file (a FIFO would block,
    a device never ends: neither is opened), one PIL cannot read, and an image over PIL's
    decompression-bomb limit (twice `Image.MAX_IMAGE_PIXELS`, about 179 megapixels).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: is {special_file_kind(mode)}, not a regular image file")
    try:
        with warnings.catch_warnings():
            if max_side is not None:  # read at a bounded size: PIL's size warning is moot
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if max_side is not None and max(image.size) > max_side:
                    image.draft("RGB", (max_side, max_side))  # JPEG: decoded at 1/2 .. 1/8
                    image = image.convert("RGB")
                    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path}: image too large ({_bomb_size(exc)})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def _bomb_size(exc: Image.DecompressionBombError) -> str:
    """'400 megapixels, over the 179 megapixel limit' from PIL's message (its only record
    of the size: the image object is not returned)."""
    numbers = [int(n) for n in re.findall(r"\d+", str(exc))]
    if len(numbers) < 2:
        return str(exc)
    pixels, limit = numbers[:2]
    return f"{pixels / 1e6:.3g} megapixels, over the {limit / 1e6:.3g} megapixel limit"


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize with Lanczos (the filter of the FFHQ alignment's last step)."""
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def expand_image_paths(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders become their image files (recursive, sorted). A source that
    does not exist, or no image at all, is a UserError (before any model is loaded)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not source.exists():
            raise UserError(f"{source}: no such file")
        else:
            paths.append(source)
    if not paths:
        raise UserError("no images found in the given paths")
    return paths
