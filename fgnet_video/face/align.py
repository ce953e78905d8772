"""FFHQ face alignment: the crop FG-Net's training data was made with.

The recipe is NVIDIA ffhq-dataset's `recreate_aligned_images` with output 256 and transform
1024, which FG-Net's data used. From the 68 dlib landmarks:

    eye_l, eye_r = means of points 36-41, 42-47;   eye_avg = (eye_l + eye_r) / 2
    mouth_avg = (p48 + p54) / 2;   e2e = eye_r - eye_l;   e2m = mouth_avg - eye_avg
    x = unit(e2e - rot90(e2m)) * max(2 |e2e|, 1.8 |e2m|);   y = rot90(x)
    c = eye_avg + 0.1 e2m;   quad = (c - x - y, c - x + y, c + x + y, c + x - y)   (NW SW SE NE)

and the quad (side qsize = 2|x|) becomes the output square. `method="exact"` follows the
recipe step by step (shrink by floor(qsize / size / 2) when > 1 with Lanczos, crop with a
10 % border, reflect-pad with blur and median fade when the quad leaves the image, PIL QUAD
transform to 4 * size with bilinear sampling at `quad + 0.5`, Lanczos resize to `size`); it
reproduces the release's crops exactly. `method="fast"` maps the same quad straight to
`size` with one affine warp (the face region block-averaged first by the integer part of the
source/output scale, then bilinear sampling with reflected borders) and redoes the
blur/median fade of the padding in the output image; it is 20-50x faster on CPU and within
about 1 grey level (mean absolute difference) of the exact crop.

Coordinates are pixel indices (pixel centres at integers) in both images; `matrix` maps
source (x, y, 1) to aligned (x, y, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from fgnet_video.options import ALIGN_METHODS, AlignMethod

_FADE_REDUCTION = 4  # fast path: the padding fade is computed at size / this, then upsampled
_TRANSFORM_FACTOR = 4  # the recipe's QUAD transform size over its output size (1024 / 256)


@dataclass(frozen=True)
class AlignedFace:
    """An aligned crop, the 3x3 source->aligned pixel matrix and the landmarks mapped by it."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    matrix: np.ndarray  # (3, 3) float64
    landmarks: np.ndarray  # (68, 2) float64, aligned pixels


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The recipe's oriented crop square as (4, 2) corners NW, SW, SE, NE in source pixels."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got shape {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    if not np.hypot(*x) > 0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_size(quad: np.ndarray) -> float:
    """Side length of the crop square (the recipe's qsize)."""
    return float(np.hypot(*(quad[3] - quad[0])))


def aligned_to_source(quad: np.ndarray, size: int) -> np.ndarray:
    """3x3 affine taking aligned pixel (u, v) to source pixels.

    PIL's QUAD transform samples output pixel centre u + 0.5 at
    nw + 0.5 + (ne - nw) (u + 0.5) / T + (sw - nw) (v + 0.5) / T (continuous coordinates) and
    the Lanczos resize keeps pixel centres, so in pixel indices
    src = nw + (ne - nw) (u + 0.5) / size + (sw - nw) (v + 0.5) / size.
    """
    nw, sw, _, ne = np.asarray(quad, dtype=np.float64)
    ex, ey = (ne - nw) / size, (sw - nw) / size
    origin = nw + 0.5 * (ex + ey)
    return np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]], [0.0, 0.0, 1.0]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine/projective matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    mapped = pts @ matrix[:2, :2].T + matrix[:2, 2]
    if np.any(matrix[2] != [0.0, 0.0, 1.0]):
        w = pts @ matrix[2, :2] + matrix[2, 2]
        mapped /= w[:, None]
    return mapped


# -- the recipe's padding: reflect, then blur and fade towards the median -------------------

@dataclass(frozen=True)
class _Padding:
    """Where the recipe crops its (possibly shrunk) image and how much it pads it.

    `crop` is (left, top, right, bottom) in the shrunk image; `pad` is (left, top, right,
    bottom) added around the crop, all zeros when the recipe does not pad.
    """

    crop: tuple[int, int, int, int]
    pad: tuple[int, int, int, int]

    @property
    def padded(self) -> bool:
        return max(self.pad) > 0


def _plan_padding(quad: np.ndarray, qsize: float, width: int, height: int) -> _Padding:
    """The recipe's crop and pad decisions for `quad` in an image of width x height."""
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, width), min(hi[1] + border, height))
    if crop[2] - crop[0] >= width and crop[3] - crop[1] >= height:
        crop = (0, 0, width, height)
    lo, hi = lo - crop[:2], hi - crop[:2]
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0),
           max(hi[0] - crop_w + border, 0), max(hi[1] - crop_h + border, 0))
    if max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
    else:
        pad = (0, 0, 0, 0)
    return _Padding(crop, pad)


def _fade_weights(x: np.ndarray, y: np.ndarray, padding: _Padding) -> np.ndarray:
    """The recipe's mask at padded-image coordinates (x, y): 0 at the image edge, 1 at the
    padded edge, negative inside; blur weight is clip(3 mask + 1), median weight clip(mask)."""
    left, top, right, bottom = padding.pad
    w = padding.crop[2] - padding.crop[0] + left + right
    h = padding.crop[3] - padding.crop[1] + top + bottom
    mask_x = 1.0 - np.minimum(x / left, (w - 1 - x) / right)
    mask_y = 1.0 - np.minimum(y / top, (h - 1 - y) / bottom)
    return np.maximum(mask_x, mask_y).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian over the two image axes as scipy.ndimage.gaussian_filter does it
    (radius round(4 sigma), half-sample symmetric 'reflect' border), float32."""
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    return cv2.sepFilter2D(image.astype(np.float32, copy=False), -1, kernel, kernel,
                           borderType=cv2.BORDER_REFLECT)


def _blend_padding(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Blur towards the padded edges, then fade to the per-channel median: the recipe's
    img += (blur(img) - img) * clip(3 mask + 1, 0, 1); img += (median - img) * clip(mask, 0, 1)."""
    img = image.astype(np.float32)
    mask = mask[..., None]
    img += (gaussian_blur(img, sigma) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img


# -- exact: the recipe step by step ----------------------------------------------------------

def _align_exact(image: np.ndarray, quad: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The recipe with PIL; returns the crop and the quad as actually sampled in `image`."""
    height, width = image.shape[:2]
    qsize = quad_size(quad)
    img = Image.fromarray(image)
    scale = np.ones(2)
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        resized = (int(np.rint(width / shrink)), int(np.rint(height / shrink)))
        img = img.resize(resized, Image.Resampling.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink
        scale = np.array([width, height], dtype=np.float64) / resized
    # A PIL resize keeps pixel centres: shrunk index i is source index (i + 0.5) * scale - 0.5.
    sampled_quad = (quad + 0.5) * scale - 0.5

    padding = _plan_padding(quad, qsize, img.size[0], img.size[1])
    if padding.crop != (0, 0, *img.size):
        img = img.crop(padding.crop)
        quad = quad - padding.crop[:2]
    if padding.padded:
        left, top, right, bottom = padding.pad
        arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)),
                     mode="reflect")
        ys, xs = np.ogrid[: arr.shape[0], : arr.shape[1]]
        arr = _blend_padding(arr, _fade_weights(xs.astype(np.float32), ys.astype(np.float32),
                                                padding), qsize * 0.02)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad = quad + [left, top]

    transform_size = size * _TRANSFORM_FACTOR
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD,
                        (quad + 0.5).flatten(), Image.Resampling.BILINEAR)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img), sampled_quad


# -- fast: one warp from the same quad -------------------------------------------------------

def _reflect_index(index: np.ndarray, n: int) -> np.ndarray:
    """Index into 0..n-1 of np.pad(mode='reflect') (mirror without repeating the edge)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


def _padded_median(image: np.ndarray, padding: _Padding, shrink: int) -> np.ndarray:
    """Per-channel median of the recipe's reflect-padded crop, from a 48x48 sample grid."""
    left, top, right, bottom = padding.pad
    crop_w = padding.crop[2] - padding.crop[0]
    crop_h = padding.crop[3] - padding.crop[1]
    xs = np.linspace(0, crop_w + left + right - 1, 48).round().astype(int) - left
    ys = np.linspace(0, crop_h + top + bottom - 1, 48).round().astype(int) - top
    xs = (_reflect_index(xs, crop_w) + padding.crop[0]) * shrink
    ys = (_reflect_index(ys, crop_h) + padding.crop[1]) * shrink
    height, width = image.shape[:2]
    sample = image[np.minimum(ys, height - 1)[:, None], np.minimum(xs, width - 1)[None, :]]
    return np.median(sample.reshape(-1, 3), axis=0)


def _fade_fast(aligned: np.ndarray, image: np.ndarray, quad: np.ndarray,
               to_source: np.ndarray) -> np.ndarray:
    """Redo the recipe's blur and median fade of its padding on the output pixels.

    out = img (1 - wb)(1 - wm) + blur wb (1 - wm) + median wm, with the recipe's weights
    wb = clip(3 mask + 1), wm = clip(mask). Everything but `img` is smooth (the blur has sigma
    0.02 size), so the weights and the blur/median fill are computed at a quarter of the
    resolution and upsampled; one full-resolution blend remains.
    """
    height, width = image.shape[:2]
    size = aligned.shape[0]
    qsize = quad_size(quad)
    shrink = max(int(np.floor(qsize / size * 0.5)), 1)
    shrunk = (int(np.rint(width / shrink)), int(np.rint(height / shrink)))
    padding = _plan_padding(quad / shrink, qsize / shrink, *shrunk)
    if not padding.padded:
        return aligned
    low = max(size // _FADE_REDUCTION, 1)
    # Output pixel (u, v) -> the recipe's padded-image coordinates, at the centres a bilinear
    # upsample from low to size reads (u = r j + (r - 1) / 2, r = size / low).
    grid = np.arange(low, dtype=np.float32) * (size / low) + (size / low - 1) / 2
    u, v = grid[None, :], grid[:, None]
    a = to_source.astype(np.float32) / shrink
    pad_x = a[0, 0] * u + a[0, 1] * v + (a[0, 2] - padding.crop[0] + padding.pad[0])
    pad_y = a[1, 0] * u + a[1, 1] * v + (a[1, 2] - padding.crop[1] + padding.pad[1])
    mask = _fade_weights(pad_x, pad_y, padding)
    blur_w = np.clip(mask * 3.0 + 1.0, 0.0, 1.0)[..., None]
    median_w = np.clip(mask, 0.0, 1.0)[..., None]
    keep = (1.0 - blur_w) * (1.0 - median_w)
    small = cv2.resize(aligned, (low, low), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), 0.02 * low,
                               borderType=cv2.BORDER_REFLECT).astype(np.float32)
    median = _padded_median(image, padding, shrink).astype(np.float32)
    filled = blurred * blur_w * (1.0 - median_w) + median * median_w
    fill = np.where(keep < 1.0 - 1e-3, filled / np.maximum(1.0 - keep, 1e-3), blurred)
    fill = cv2.resize(np.uint8(np.clip(np.rint(fill), 0, 255)), (size, size),
                      interpolation=cv2.INTER_LINEAR)
    keep = cv2.resize(keep[..., 0], (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.blendLinear(aligned, fill, keep, 1.0 - keep)


def _align_fast(image: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """One affine warp of the quad to size x size, then the padding fade in output space."""
    height, width = image.shape[:2]
    to_source = aligned_to_source(quad, size)
    step = quad_size(quad) / size  # source pixels per aligned pixel
    source, warp = image, to_source
    factor = int(step)
    if factor >= 2:  # average factor x factor blocks of the face region first (anti-aliasing)
        x0, y0 = np.maximum(np.floor(quad.min(axis=0)).astype(int) - factor - 2, 0)
        x1, y1 = np.minimum(np.ceil(quad.max(axis=0)).astype(int) + factor + 3, [width, height])
        x1, y1 = x0 + (x1 - x0) // factor * factor, y0 + (y1 - y0) // factor * factor
        if x1 - x0 >= 2 * factor and y1 - y0 >= 2 * factor:
            source = cv2.resize(image[y0:y1, x0:x1], ((x1 - x0) // factor, (y1 - y0) // factor),
                                interpolation=cv2.INTER_AREA)
            # source index i -> block index (i - x0 + 0.5) / factor - 0.5
            to_blocks = np.array([[1.0 / factor, 0.0, (0.5 - x0) / factor - 0.5],
                                  [0.0, 1.0 / factor, (0.5 - y0) / factor - 0.5],
                                  [0.0, 0.0, 1.0]])
            warp = to_blocks @ to_source
    aligned = cv2.warpAffine(source, warp[:2], (size, size),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT_101)
    return _fade_fast(aligned, image, quad, to_source)


# -- public entry point ----------------------------------------------------------------------

def ffhq_align(image: np.ndarray, landmarks: np.ndarray, size: int = 256,
               method: AlignMethod = "exact") -> AlignedFace:
    """Align the face with these 68 landmarks (source pixels) to a size x size FFHQ crop.

    `image` is uint8 RGB (H, W, 3). `method="exact"` reproduces the release's crops (PIL,
    slow); `"fast"` is one warp within a few grey levels of it.
    """
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown alignment method {method!r} (use 'exact' or 'fast')")
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {image.dtype} {image.shape}")
    if size < 8:
        raise ValueError(f"aligned size must be at least 8 pixels, got {size}")
    quad = ffhq_quad(landmarks)
    if method == "exact":
        aligned, sampled_quad = _align_exact(image, quad, size)
    else:
        aligned, sampled_quad = _align_fast(image, quad, size), quad
    matrix = np.linalg.inv(aligned_to_source(sampled_quad, size))
    return AlignedFace(aligned, matrix, transform_points(matrix, landmarks))
