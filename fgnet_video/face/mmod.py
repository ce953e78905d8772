"""dlib's MMOD CNN face detector (`dlib.cnn_face_detection_model_v1`) in PyTorch.

It loads dlib's own `mmod_human_face_detector.dat` (via `dlib_format.read_network`) and
reproduces every step of `cnn_face_detection_model_v1(img, upsample_num_times)`:

1. Upsampling (optional, `upsample` times): dlib's `pyramid_up(img, pyramid_down<2>)`, a
   bilinear resize of the uint8 RGB image to (2H+1) x (2W+2) pixels (the size comes from
   `pyramid_down<2>::rect_up` of the image rectangle), truncating to uint8
   (`pyramid_up_rgb`).
2. Input layer `input_rgb_image_pyramid<pyramid_down<6>>`: each channel becomes
   `(pixel - mean) / 256` (means from the file: 122.782, 117.001, 104.298 for R, G, B), and
   all pyramid levels (each 5/6 the size of the last, `floor(5/6 * side)`, down to 5 rows)
   are packed into ONE zero-filled image: the first column of levels down the left edge
   separated by 10 zero rows, the rest stacked bottom-up along the right edge, 11 zero
   pixels around everything (`pyramid_layout`). Level i is the bilinear resize
   (align-corners: source = dest * (in-1)/(out-1)) of level i-1 as already placed in the
   tiled image (`tiled_pyramid`). The convolutions run over this one image, so windows
   near a tile edge see the zero padding and the neighbouring tiles exactly as in dlib.
3. The CNN: three 5x5 stride-2 convs (16, 32, 32 filters, no padding) each followed by the
   per-channel affine transform (dlib converts the file's batch-norm layers to
   `gamma / sqrt(var + eps)` and `beta - gamma' * mean`; folded here into the conv) and a
   ReLU; three 5x5 convs of 45 filters (padding 2) + affine + ReLU; a 9x9 conv to one
   score map (padding 4).
4. Decoding (`loss_mmod_::to_label` with adjust_threshold): every output position with
   score > threshold (strictly) maps back to the tiled image through each conv
   (`p_in = p_out * stride - padding + size // 2`, here `8p + 14`), becomes the 80x80
   window centred there (`centered_drect`: centre -/+ 39.5), goes to the pyramid level
   whose tile contains the window centre (rounded to the nearest pixel; else the tile
   nearest to it), is shifted to that tile's origin and mapped up `level` times by
   `p * 6/5 + 0.3`.
5. Non-max suppression: candidates by decreasing score; each is rounded to integer pixels
   (`std::lround`) and dropped when it overlaps a kept box with intersection / area of the
   two boxes' bounding box > 0.338 (the file's `overlaps_nms` IoU threshold; areas count
   pixels, width = right - left + 1) or intersection / either box's area > 1.0 (never).
6. With upsampling each box goes back through `pyramid_down<2>::rect_down`
   (`p / 2 - (1.25, 0.75)` per level) and is rounded again.

Boxes are dlib rectangles: (left, top, right, bottom), inclusive, in the caller's pixels.
fp32 matches dlib to float rounding (conv summation order), IEEE fp32 on CUDA too
(`fgnet_video.fp32`: not the TF32 cuDNN would use); other dtypes work through `.to(...)`
and trade that exactness for speed.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fgnet_video.face.dlib_format import DlibLayer, DlibNetwork, read_network
from fgnet_video.fp32 import exact_fp32

__all__ = [
    "MMOD_MODEL", "MmodDetector", "PyramidLayout", "default_model_path", "nms", "pixel_runs",
    "pyramid_layout", "pyramid_up_rgb", "tiled_pyramid",
]

MMOD_MODEL = "mmod_human_face_detector.dat"
PYRAMID_N = 6            # pyramid_down<6>: each level is 5/6 the size of the previous one
PYRAMID_MIN_HEIGHT = 5   # compute_tiled_image_pyramid_details stops below this many rows
# The three 5x5 stride-2 convolutions need a tiled image of at least 29 px a side (29 -> 13
# -> 5 -> 1), the frame plus 2 x 11 px of outer padding: smaller frames (dlib itself fails
# on them) hold no face of the 80 px window and get no detection.
MIN_FRAME_SIDE = 7
UP_OFFSET = (1.25, 0.75)  # pyramid_down<2>: point_up(p) = (p + UP_OFFSET) * 2
# Frame pixels in one network call at most (`pixel_runs`): four 2x copies of a 720p
# frame (the small-face pass's), one copy of a 1080p frame
BATCH_PIXELS = 4 * 2560 * 1440

Rect = tuple[int, int, int, int]          # left, top, right, bottom (inclusive)
Detection = tuple[Rect, float]            # box, MMOD confidence


def default_model_path() -> Path:
    """Path of mmod_human_face_detector.dat in the face_recognition_models package (found
    with find_spec: importing that package needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the face_recognition_models package is not installed "
                                "(pip install face-recognition-models)")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / MMOD_MODEL


# ----------------------------------------------------------------------------------------
# rounding helpers (dlib's conversions)


def _lround(values: np.ndarray) -> np.ndarray:
    """std::lround: nearest integer, halves away from zero (drectangle -> rectangle)."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values >= 0, np.floor(values + 0.5), np.ceil(values - 0.5)).astype(np.int64)


def _round_point(values: np.ndarray) -> np.ndarray:
    """dlib's dpoint -> point conversion: floor(v + 0.5)."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


# ----------------------------------------------------------------------------------------
# the tiled image pyramid


@dataclass(frozen=True)
class PyramidLayout:
    """Where each pyramid level sits in the tiled input image.

    `rects[i]` = (left, top, right, bottom), inclusive, of level i (level 0 = the image);
    the tiled image is `height` x `width`.
    """

    rects: tuple[Rect, ...]
    height: int
    width: int


def _level_sizes(nr: int, nc: int, n: int) -> list[tuple[int, int]]:
    """(rows, cols) of each level: floor((n-1)/n * side) until empty or < 5 rows."""
    rate = (n - 1.0) / n
    sizes = [(nr, nc)]
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < PYRAMID_MIN_HEIGHT:
            return sizes
        sizes.append((nr, nc))


def _first_column_height(sizes: list[tuple[int, int]], padding: int) -> int:
    """Rows used by the left column: levels go down it until the next one fits beside the
    previous one and the column holds at least half of the total height."""
    total = sum(h + padding for h, _ in sizes) - 2 * padding
    h0, w0 = sizes[0]
    height, prev_width = 0, 0
    for h, w in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= total - h0:
            break
        height += h + padding
        prev_width = w
    return height - padding


def pyramid_layout(nr: int, nc: int, padding: int = 10, outer_padding: int = 11,
                   n: int = PYRAMID_N) -> PyramidLayout:
    """dlib's compute_tiled_image_pyramid_details for pyramid_down<n> on an nr x nc image.

    Levels go down the left column (separated by `padding` rows); the remaining levels go
    up the right edge, bottom-aligned from the column's last row, each `padding` rows above
    the next, dropping the rest once one would overlap level 0. Everything is surrounded by
    `outer_padding` zero pixels.
    """
    if nr * nc == 0:
        return PyramidLayout((), 0, 0)
    sizes = _level_sizes(nr, nc, n)
    height = _first_column_height(sizes, padding)
    width = sizes[0][1]
    rects: list[Rect] = []
    y = outer_padding
    while y < height + outer_padding and len(rects) < len(sizes):
        h, w = sizes[len(rects)]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
    y -= padding
    first = rects[0]
    while len(rects) < len(sizes):
        h, w = sizes[len(rects)]
        right, bottom = outer_padding + width - 1, y - 1
        rect = (right - (w - 1), bottom - (h - 1), right, bottom)
        if (max(first[0], rect[0]) <= min(first[2], rect[2])
                and max(first[1], rect[1]) <= min(first[3], rect[3])):
            break
        rects.append(rect)
        y -= h + padding
    return PyramidLayout(tuple(rects), height + 2 * outer_padding, width + 2 * outer_padding)


def _zeros(frames: torch.Tensor, height: int, width: int, channels_last: bool) -> torch.Tensor:
    """(N, 3, height, width) float32 zeros on frames' device, channels-last in memory when
    asked (so the network input needs no copy)."""
    n = frames.shape[0]
    if channels_last:
        return frames.new_zeros((n, height, width, 3), dtype=torch.float32).permute(0, 3, 1, 2)
    return frames.new_zeros((n, 3, height, width), dtype=torch.float32)


def _normalized(frames: torch.Tensor, mean_rgb: Sequence[float]) -> torch.Tensor:
    """Level 0: (N, 3, H, W) `(pixel - mean) / 256` per channel of (N, H, W, 3) uint8."""
    mean = torch.tensor([float(np.float32(m)) for m in mean_rgb], dtype=torch.float32,
                        device=frames.device)
    return ((frames.float() - mean) / 256).permute(0, 3, 1, 2)


def tiled_pyramid(frames: torch.Tensor, layout: PyramidLayout,
                  mean_rgb: Sequence[float], channels_last: bool = False) -> torch.Tensor:
    """The network input: (N, 3, layout.height, layout.width) float32 on frames' device,
    in channels-last memory when `channels_last` (built so: no copy afterwards).

    `frames`: (N, H, W, 3) uint8 RGB. Level 0 is `(pixel - mean) / 256` per channel; level i
    is the align-corners bilinear resize of level i-1 (dlib's tt::resize_bilinear on the
    tiled tensor); every other pixel is 0.
    """
    out = _zeros(frames, layout.height, layout.width, channels_last)
    left, top, right, bottom = layout.rects[0]
    out[:, :, top:bottom + 1, left:right + 1] = _normalized(frames, mean_rgb)
    for prev, rect in zip(layout.rects, layout.rects[1:], strict=False):
        src = out[:, :, prev[1]:prev[3] + 1, prev[0]:prev[2] + 1]
        size = (rect[3] - rect[1] + 1, rect[2] - rect[0] + 1)
        out[:, :, rect[1]:rect[3] + 1, rect[0]:rect[2] + 1] = F.interpolate(
            src, size=size, mode="bilinear", align_corners=True)
    return out


def pyramid_levels(frames: torch.Tensor, rects: Sequence[Rect], mean_rgb: Sequence[float],
                   padding: int, channels_last: bool = False) -> Iterator[torch.Tensor]:
    """Pyramid levels 0, 1, ... one by one, each alone on a zero canvas: level i, sized by
    `rects[i]` = (left, top, right, bottom), sits at (left, top) on a canvas of
    (bottom + 1 + padding) x (right + 1 + padding), (N, 3, ...) float32 (`padding` zeros
    after its last row and column). Its pixels are those of `tiled_pyramid` (level i the
    align-corners bilinear resize of level i-1)."""
    level = _normalized(frames, mean_rgb)
    for i, (left, top, right, bottom) in enumerate(rects):
        rows, cols = bottom - top + 1, right - left + 1
        if i:
            level = F.interpolate(level, size=(rows, cols), mode="bilinear",
                                  align_corners=True)
        canvas = _zeros(frames, bottom + 1 + padding, right + 1 + padding, channels_last)
        canvas[:, :, top:bottom + 1, left:right + 1] = level
        yield canvas


def pixel_runs(pixels: Sequence[float], most: int | None = None) -> list[list[int]]:
    """The frames of each network call: indices 0, 1, ... of frames of `pixels` pixels, in
    consecutive runs of at most `most` frames holding at most BATCH_PIXELS in all (a frame
    larger than that is a run of its own)."""
    runs: list[list[int]] = []
    held = 0.0
    for i, size in enumerate(pixels):
        if not runs or held + size > BATCH_PIXELS or (most is not None and len(runs[-1]) >= most):
            runs.append([])
            held = 0.0
        runs[-1].append(i)
        held += size
    return runs


# ----------------------------------------------------------------------------------------
# upsampling (pyramid_up with pyramid_down<2>)


def _up_size(nr: int, nc: int) -> tuple[int, int]:
    """Output (rows, cols) of dlib's pyramid_up: rect_up of the image rectangle, rounded
    (std::lround), plus one: (2H+1, 2W+2) since (W-1+1.25)*2 = 2W+0.5 -> 2W+1 and
    (H-1+0.75)*2 = 2H-0.5 -> 2H."""
    right = _lround(np.float64((nc - 1 + UP_OFFSET[0]) * 2))
    bottom = _lround(np.float64((nr - 1 + UP_OFFSET[1]) * 2))
    return int(bottom) + 1, int(right) + 1


def _simd_columns(in_nc: int, out_nc: int, scale: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Left column and float32 fraction of each output column as dlib's 4-wide SSE loop
    computes them (positions accumulated in float32), and the first column it leaves to
    the scalar loop (the SIMD loop stops once lane 3's right neighbour leaves the image)."""
    steps = out_nc // 4 + 2
    start = np.array([-4 * scale + j * scale for j in range(4)], dtype=np.float32)
    increments = np.full((steps, 4), np.float32(4 * scale), dtype=np.float32)
    increments[0] += start  # float32 (start + step) is the first iteration's value
    lanes = np.add.accumulate(increments, axis=0, dtype=np.float32)
    left = np.trunc(lanes).astype(np.int64)
    stop = int(np.argmax(left[:, 3] + 1 >= in_nc)) if np.any(left[:, 3] + 1 >= in_nc) else steps
    frac = (lanes - left.astype(np.float32)).astype(np.float32)
    return left.reshape(-1)[:out_nc], frac.reshape(-1)[:out_nc], min(4 * stop, out_nc)


def pyramid_up_rgb(image: np.ndarray) -> np.ndarray:
    """dlib's `pyramid_up(img, pyramid_down<2>)` of an H x W x 3 uint8 image: a
    (2H+1) x (2W+2) bilinear resize (source = dest * (in-1)/(out-1)), float32 SSE
    arithmetic truncated to uint8 for most columns, double arithmetic for the last few,
    as dlib's resize_image for rgb_pixel images does."""
    nr, nc = image.shape[:2]
    out_nr, out_nc = _up_size(nr, nc)
    x_scale = (nc - 1) / max(out_nc - 1, 1)
    y_scale = (nr - 1) / max(out_nr - 1, 1)
    ys = np.add.accumulate(np.concatenate([[-y_scale], np.full(out_nr, y_scale)]))[1:]
    top = np.floor(ys).astype(np.int64)
    bottom = np.minimum(top + 1, nr - 1)
    tb = ys - top
    img = image.astype(np.float32)
    out = np.empty((out_nr, out_nc, 3), dtype=np.uint8)
    left, frac, split = _simd_columns(nc, out_nc, x_scale)
    if split:
        lf, rt = left[:split], np.minimum(left[:split] + 1, nc - 1)
        lr = frac[:split][None, :, None]
        inv_lr = (np.float32(1) - frac[:split])[None, :, None]
        tbf = tb.astype(np.float32)[:, None, None]
        inv_tbf = (1 - tb).astype(np.float32)[:, None, None]
        value = (inv_tbf * inv_lr) * img[top][:, lf] + (inv_tbf * lr) * img[top][:, rt]
        value = value + (tbf * inv_lr) * img[bottom][:, lf]
        value = value + (tbf * lr) * img[bottom][:, rt]
        out[:, :split] = np.trunc(value).astype(np.int32).astype(np.uint8)
    if split < out_nc:
        cols = np.arange(split, out_nc)
        xs = np.add.accumulate(np.concatenate([[-x_scale + split * x_scale],
                                               np.full(len(cols), x_scale)]))[1:]
        lf = np.floor(xs).astype(np.int64)
        rt = np.minimum(lf + 1, nc - 1)
        lr = (xs - lf)[None, :, None]
        tbd = tb[:, None, None]
        imd = image.astype(np.float64)
        value = ((1 - tbd) * ((1 - lr) * imd[top][:, lf] + lr * imd[top][:, rt])
                 + tbd * ((1 - lr) * imd[bottom][:, lf] + lr * imd[bottom][:, rt]))
        out[:, split:] = np.trunc(value).astype(np.int64).astype(np.uint8)
    return out


def _rect_down(boxes: np.ndarray, levels: int) -> np.ndarray:
    """pyramid_down<2>::rect_down `levels` times (p / 2 - (1.25, 0.75)), then lround."""
    out = boxes.astype(np.float64)
    for _ in range(levels):
        out = out / 2.0 - np.array([UP_OFFSET[0], UP_OFFSET[1]] * 2)
    return _lround(out)


# ----------------------------------------------------------------------------------------
# decoding


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float,
        covered_thresh: float = 1.0) -> np.ndarray:
    """Indices kept by dlib's loss_mmod non-max suppression.

    Candidates go by decreasing score (ties: scan order). Boxes are integer rectangles
    (left, top, right, bottom), area = (right-left+1) * (bottom-top+1). A candidate is
    dropped when, for some kept box, intersection / area(bounding box of both) > iou_thresh
    or intersection / either area > covered_thresh (test_box_overlap).
    """
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for i in order:
        if kept and _overlaps_any(boxes[kept], boxes[i], iou_thresh, covered_thresh):
            continue
        kept.append(int(i))
    return np.array(kept, dtype=np.int64)


def _area(left, top, right, bottom):
    """Pixel count of inclusive rectangles (0 when empty)."""
    width = np.where(right >= left, right - left + 1, 0)
    height = np.where(bottom >= top, bottom - top + 1, 0)
    return width * height


def _overlaps_any(kept: np.ndarray, box: np.ndarray, iou_thresh: float,
                  covered_thresh: float) -> bool:
    """test_box_overlap(kept[j], box) for any j."""
    inner = _area(np.maximum(kept[:, 0], box[0]), np.maximum(kept[:, 1], box[1]),
                  np.minimum(kept[:, 2], box[2]), np.minimum(kept[:, 3], box[3]))
    outer = _area(np.minimum(kept[:, 0], box[0]), np.minimum(kept[:, 1], box[1]),
                  np.maximum(kept[:, 2], box[2]), np.maximum(kept[:, 3], box[3]))
    area_a = _area(kept[:, 0], kept[:, 1], kept[:, 2], kept[:, 3])
    area_b = _area(*box)
    with np.errstate(divide="ignore", invalid="ignore"):
        hit = ((inner / outer > iou_thresh) | (inner / area_a > covered_thresh)
               | (inner / area_b > covered_thresh))
    return bool(np.any(hit & (inner > 0)))


def _nearest_level(layout: PyramidLayout, points: np.ndarray) -> np.ndarray:
    """dlib's nearest_rect: the first tile containing each (x, y) integer point, else the
    tile at the least Euclidean distance (first on ties)."""
    rects = np.array(layout.rects, dtype=np.int64)
    x, y = points[:, :1], points[:, 1:]
    inside = ((x >= rects[:, 0]) & (x <= rects[:, 2]) & (y >= rects[:, 1])
              & (y <= rects[:, 3]))
    nx = np.clip(x, rects[:, 0], rects[:, 2])
    ny = np.clip(y, rects[:, 1], rects[:, 3])
    dist = np.hypot((nx - x).astype(np.float64), (ny - y).astype(np.float64))
    return np.where(inside.any(axis=1), inside.argmax(axis=1), dist.argmin(axis=1))


def _windows_to_image(layout: PyramidLayout, boxes: np.ndarray) -> np.ndarray:
    """tiled_pyramid_to_image for drectangles (l, t, r, b) in tiled-image coordinates:
    level = nearest_rect(rects, rounded centre); subtract its tile origin; then
    `_level_to_image`."""
    centres = _round_point(np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0,
                                     (boxes[:, 1] + boxes[:, 3]) / 2.0], axis=1))
    level = _nearest_level(layout, centres)
    origins = np.array(layout.rects, dtype=np.float64)[level][:, :2]
    return _level_to_image(boxes - np.concatenate([origins, origins], axis=1), level)


def _level_to_image(boxes: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Boxes (l, t, r, b) in the pixels of pyramid level `level` (per box) to image pixels:
    `v * 6/5 + 0.3` per coordinate, `level` times (pyramid_down<6>::point_up)."""
    out = boxes
    ratio = PYRAMID_N / (PYRAMID_N - 1.0)
    for step in range(int(level.max(initial=0))):
        up = (level > step)[:, None]
        out = np.where(up, out * ratio + 0.3, out)
    return out


# ----------------------------------------------------------------------------------------
# the network


class _ChannelAffine(nn.Module):
    """dlib's affine_ in conv mode: x * gamma[k] + beta[k]."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(gamma.reshape(1, -1, 1, 1).copy()))
        self.register_buffer("beta", torch.from_numpy(beta.reshape(1, -1, 1, 1).copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _affine_params(layer: DlibLayer) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (gamma, beta) of an affine layer, or of a bn_con layer converted as dlib
    converts it on loading into an affine_: gamma / sqrt(var + eps), beta - gamma' * mean
    (float32)."""
    p = layer.params
    if layer.kind == "affine":
        if p["mode"] != "conv":
            raise ValueError("fc-mode affine layers are not supported by the MMOD builder")
        return p["gamma"].reshape(-1), p["beta"].reshape(-1)
    gamma = p["gamma"].reshape(-1) / np.sqrt(p["running_variances"].reshape(-1)
                                             + np.float32(p["eps"]))
    beta = p["beta"].reshape(-1) - gamma * p["running_means"].reshape(-1)
    return gamma.astype(np.float32), beta.astype(np.float32)


def _conv(layer: DlibLayer) -> nn.Conv2d:
    p = layer.params
    conv = nn.Conv2d(p["weight"].shape[1], p["num_filters"], (p["nr"], p["nc"]),
                     stride=(p["stride_y"], p["stride_x"]),
                     padding=(p["padding_y"], p["padding_x"]), bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.array(p["weight"], dtype=np.float32)))
        bias = p["bias"] if p["bias"] is not None else np.zeros(p["num_filters"], np.float32)
        conv.bias.copy_(torch.from_numpy(np.array(bias, dtype=np.float32)))
    return conv


def _fold_affine(conv: nn.Conv2d, gamma: np.ndarray, beta: np.ndarray) -> None:
    """conv then x*gamma+beta == conv with weight*gamma and bias*gamma+beta."""
    g = torch.from_numpy(np.array(gamma, dtype=np.float32))
    with torch.no_grad():
        conv.weight.mul_(g.view(-1, 1, 1, 1))
        conv.bias.copy_(conv.bias * g + torch.from_numpy(np.array(beta, dtype=np.float32)))


def build_layers(network: DlibNetwork, fold_affine: bool = True) -> tuple[nn.Sequential,
                                                                          list[DlibLayer]]:
    """The CNN between input and loss as an nn.Sequential (con -> Conv2d, affine/bn_con ->
    folded into the preceding conv or a per-channel affine, relu -> ReLU), and the con
    layers in order (for mapping output positions back)."""
    modules: list[nn.Module] = []
    convs: list[DlibLayer] = []
    for layer in network.layers[1:-1]:
        if layer.kind == "con":
            modules.append(_conv(layer))
            convs.append(layer)
        elif layer.kind in ("affine", "bn_con"):
            if layer.params.get("disabled"):
                continue
            gamma, beta = _affine_params(layer)
            if fold_affine and modules and isinstance(modules[-1], nn.Conv2d):
                _fold_affine(modules[-1], gamma, beta)
            else:
                modules.append(_ChannelAffine(gamma, beta))
        elif layer.kind == "relu":
            if not layer.params.get("disabled"):
                modules.append(nn.ReLU(inplace=True))
        else:
            raise ValueError(f"{network.path}: layer {layer.kind!r} is not part of an MMOD "
                             "detector this builder supports")
    return nn.Sequential(*modules), convs


def _output_to_input(convs: list[DlibLayer], cols: np.ndarray, rows: np.ndarray):
    """output_tensor_to_input_tensor: through each conv from the output side,
    p = p * stride - padding + size // 2 (size // 2 is integer division)."""
    x, y = cols.astype(np.float64), rows.astype(np.float64)
    for layer in reversed(convs):
        p = layer.params
        x = x * p["stride_x"] - p["padding_x"] + p["nc"] // 2
        y = y * p["stride_y"] - p["padding_y"] + p["nr"] // 2
    return x, y


class MmodDetector(nn.Module):
    """dlib's CNN face detector: `detect(frames)` gives what
    `dlib.cnn_face_detection_model_v1(path)(frame, upsample)` gives, per frame.

    `forward(tiled)` runs the CNN on tiled-pyramid input (N, 3, H, W) and returns the score
    map (N, windows, h, w). Move it with `.to(device, dtype)`; fp32 is the exact path.
    """

    def __init__(self, network: DlibNetwork, channels_last: bool = True) -> None:
        super().__init__()
        if network.input.kind != "input_rgb_image_pyramid" or network.loss.kind != "loss_mmod":
            raise ValueError(f"{network.path}: not an MMOD detector (input "
                             f"{network.input.kind}, loss {network.loss.kind})")
        options = network.loss_options
        if options["use_bounding_box_regression"]:
            raise ValueError(f"{network.path}: bounding-box regression is not supported")
        self.net, self._convs = build_layers(network)
        # (x, y): output positions are this many input px apart (`_output_to_input`)
        self.stride = (math.prod(c.params["stride_x"] for c in self._convs),
                       math.prod(c.params["stride_y"] for c in self._convs))
        self.channels_last = channels_last
        p = network.input.params
        self.mean_rgb = (p["avg_red"], p["avg_green"], p["avg_blue"])
        self.padding = int(p["pyramid_padding"])
        self.outer_padding = int(p["pyramid_outer_padding"])
        self.windows = [(int(w["width"]), int(w["height"])) for w in options["detector_windows"]]
        self.iou_thresh = float(options["overlaps_nms"]["iou_thresh"])
        self.covered_thresh = float(options["overlaps_nms"]["percent_covered_thresh"])

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs) -> MmodDetector:
        """The detector from dlib's .dat file (default: face_recognition_models' copy)."""
        return cls(read_network(path if path is not None else default_model_path()), **kwargs)

    def forward(self, tiled: torch.Tensor) -> torch.Tensor:
        """Score map (N, windows, h, w) of tiled-pyramid input (N, 3, H, W)."""
        if self.channels_last and tiled.device.type == "cpu":
            tiled = tiled.contiguous(memory_format=torch.channels_last)
        return self.net(tiled)

    def layout(self, nr: int, nc: int) -> PyramidLayout:
        """The tiled-pyramid layout for nr x nc frames."""
        return pyramid_layout(nr, nc, self.padding, self.outer_padding)

    @torch.inference_mode()
    def scores(self, frames: np.ndarray) -> tuple[np.ndarray, PyramidLayout]:
        """Score maps (N, windows, h, w) as float32 numpy for N same-size RGB frames."""
        param = next(self.parameters())
        layout = self.layout(frames.shape[1], frames.shape[2])
        batch = torch.from_numpy(np.ascontiguousarray(frames)).to(param.device)
        channels_last = self.channels_last and param.device.type == "cpu"  # as `forward`
        tiled = tiled_pyramid(batch, layout, self.mean_rgb, channels_last).to(param.dtype)
        with exact_fp32(param.device):
            return self(tiled).float().cpu().numpy(), layout

    def decode(self, score_map: np.ndarray, layout: PyramidLayout,
               threshold: float = 0.0) -> list[Detection]:
        """Detections of one frame from its (windows, h, w) score map: loss_mmod's
        to_label (positions with score > threshold, mapped to image boxes, NMS)."""
        boxes, scores = self._windows(score_map, threshold)
        return self._suppress(_windows_to_image(layout, boxes), scores)

    def _windows(self, score_map: np.ndarray, threshold: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The detector windows scoring over `threshold` in a (windows, h, w) score map:
        (M, 4) boxes (l, t, r, b) in the pixels of the network's input, (M,) scores."""
        boxes, scores = [np.zeros((0, 4))], [np.zeros(0)]
        for k, (width, height) in enumerate(self.windows):
            rows, cols = np.nonzero(score_map[k] > threshold)
            x, y = _output_to_input(self._convs, cols, rows)
            hw, hh = (width - 1) / 2, (height - 1) / 2
            boxes.append(np.stack([x - hw, y - hh, x + hw, y + hh], axis=1))
            scores.append(score_map[k][rows, cols].astype(np.float64))
        return np.concatenate(boxes), np.concatenate(scores)

    def _suppress(self, boxes: np.ndarray, scores: np.ndarray) -> list[Detection]:
        """Candidate image boxes rounded to dlib rectangles and non-max suppressed, highest
        score first."""
        rects = _lround(boxes)
        keep = nms(rects, scores, self.iou_thresh, self.covered_thresh)
        return [(tuple(int(v) for v in rects[i]), float(scores[i])) for i in keep]

    def levels_under(self, max_side: float) -> int:
        """How many pyramid levels, from level 0, can give a box with a side under `max_side`
        px of the scanned image: a window w px wide spans (w - 1) * (6/5)^k image px at
        level k (`_level_to_image`), so level k is needed while (w - 1) * (6/5)^k <
        `max_side` for the narrowest window."""
        narrowest = min(min(width, height) for width, height in self.windows) - 1
        ratio = PYRAMID_N / (PYRAMID_N - 1.0)
        if max_side <= narrowest:
            return 0
        return math.ceil(math.log(max_side / narrowest) / math.log(ratio))

    @torch.inference_mode()
    def scan_levels(self, frames: np.ndarray, max_side: float,
                    threshold: float = 0.0) -> list[list[Detection]]:
        """Detections with a side under `max_side` px in N same-size RGB frames, scanning
        only the pyramid levels that can hold them (`levels_under`), each level alone on a
        zero canvas instead of in dlib's tiled image: on a 2x copy of a 720p frame, boxes
        under 160 px need levels 0-3, 9.7 of the tiled image's 13.5 Mpx. A level keeps its
        tiled position modulo the network's stride (8), so the network scores the windows
        the tiled image has, with the same values but for windows within its reach (about
        95 px) of the level's edge, which see zeros there rather than the next tile; and
        larger boxes, not computed, no longer suppress smaller ones in non-max suppression
        (a face dlib's NMS gave an 83 px box of the next level gets its 68 px box instead):
        nearly the whole pyramid's detections under `max_side`, not always the same ones.
        Boxes of `max_side` or more are the caller's to drop."""
        param = next(self.parameters())
        channels_last = self.channels_last and param.device.type == "cpu"  # as `forward`
        tiles = self.layout(frames.shape[1], frames.shape[2]).rects[:self.levels_under(max_side)]
        rects = [self._on_canvas(tile) for tile in tiles  # smaller levels hold no window
                 if min(tile[2] - tile[0], tile[3] - tile[1]) + 1 >= MIN_FRAME_SIDE]
        batch = torch.from_numpy(np.ascontiguousarray(frames)).to(param.device)
        found: list[tuple[list[np.ndarray], list[np.ndarray]]] = [([], []) for _ in frames]
        # after a level, room for windows centred up to its last row and column and in the
        # gap beyond, as the tiled image has (the network's outputs stop about 15 px before
        # its input's edge)
        after = self.outer_padding + max(self.stride)
        levels = pyramid_levels(batch, rects, self.mean_rgb, after, channels_last)
        for level, (canvas, (left, top, _, _)) in enumerate(zip(levels, rects, strict=True)):
            with exact_fp32(param.device):
                maps = self(canvas.to(param.dtype)).float().cpu().numpy()
            for (boxes, scores), score_map in zip(found, maps, strict=True):
                windows, window_scores = self._windows(score_map, threshold)
                boxes.append(_level_to_image(windows - (left, top, left, top),
                                             np.full(len(windows), level)))
                scores.append(window_scores)
        return [self._suppress(np.concatenate(boxes or [np.zeros((0, 4))]),
                               np.concatenate(scores or [np.zeros(0)]))
                for boxes, scores in found]

    def _on_canvas(self, rect: Rect) -> Rect:
        """A level's tile `rect` moved to its own canvas: `outer_padding` to 7 px more from
        the canvas's top left, the same position modulo the network's stride."""
        left, top, right, bottom = rect
        pad = self.outer_padding
        x = pad + (left - pad) % self.stride[0]
        y = pad + (top - pad) % self.stride[1]
        return x, y, x + right - left, y + bottom - top

    def detect(self, images: Sequence[np.ndarray], upsample: int = 0,
               threshold: float = 0.0, batch_size: int = 4,
               max_side: float = math.inf) -> list[list[Detection]]:
        """Faces in each H x W x 3 uint8 RGB image: [((left, top, right, bottom), score)],
        highest score first, as dlib.cnn_face_detection_model_v1(...)(image, upsample)
        returns them (score > threshold; dlib's Python binding uses 0). Frames of one size
        go through the network together, `batch_size` at a time and at most BATCH_PIXELS
        pixels of frames a call (one frame however large): the network's memory grows with
        the pixels (4 frames of 4K for the small-face pass, 7680x4320 each, peaked at 7.2 GB
        on a CPU), and a batch of large frames is not faster than one at a time. With a
        finite `max_side` (px of the images given), only faces under that size are wanted:
        `scan_levels` runs instead of dlib's whole pyramid (nearly its detections, not
        always; boxes of `max_side` or more may come back and are the caller's to drop)."""
        frames = [self._prepare(img, upsample) for img in images]
        results: list[list[Detection]] = [[] for _ in frames]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            if min(frame.shape[:2]) >= MIN_FRAME_SIDE:  # else nothing to find
                by_size.setdefault(frame.shape[:2], []).append(i)
        for (rows, cols), indices in by_size.items():
            for run in pixel_runs([rows * cols] * len(indices), most=batch_size):
                chunk = [indices[k] for k in run]
                batch = np.stack([frames[i] for i in chunk])
                if math.isinf(max_side):
                    maps, layout = self.scores(batch)
                    found = [self.decode(score_map, layout, threshold) for score_map in maps]
                else:
                    found = self.scan_levels(batch, max_side * 2 ** upsample, threshold)
                for i, detections in zip(chunk, found, strict=True):
                    results[i] = self._to_frame(detections, upsample)
        return results

    @staticmethod
    def _prepare(image: np.ndarray, upsample: int) -> np.ndarray:
        """Check an RGB uint8 image (grey is replicated to 3 channels, as dlib's
        assign_image does) and pyramid_up it `upsample` times."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
                image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.dtype} "
                             f"{image.shape}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        for _ in range(upsample):
            image = pyramid_up_rgb(image)
        return image

    @staticmethod
    def _to_frame(detections: list[Detection], upsample: int) -> list[Detection]:
        """Boxes back to the caller's pixels after `upsample` pyramid_up steps."""
        if not upsample or not detections:
            return detections
        boxes = _rect_down(np.array([box for box, _ in detections]), upsample)
        return [(tuple(int(v) for v in box), score)
                for box, (_, score) in zip(boxes, detections, strict=True)]
