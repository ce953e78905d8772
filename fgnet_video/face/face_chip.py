"""dlib's aligned face chip (150 x 150, padding 0.25): what its face descriptor network reads.

Reimplements, to the pixel, `dlib.get_face_chip(img, shape, 150, 0.25)` and the chips made by
`face_recognition_model_v1.compute_face_descriptor(s)` (dlib 20.0.1:
`get_face_chip_details` and `extract_image_chips` in dlib/image_transforms/interpolation.h),
with no dlib needed. Coordinates are pixel indices (pixel centres at integers).

1. The fit (`chip_transform`). The 33 landmarks 27-54 and 60-64 (nose, eyes, outer mouth: the
   brows, the jaw line and the lower lip are left out) are matched to dlib's mean face shape
   m_i in [0, 1]^2 placed in the chip at  q_i = size (padding + m_i) / (1 + 2 padding).  The
   least-squares similarity (Umeyama: scale c, rotation R, translation t) taking the q_i to
   the landmarks p_i is the 2x3 matrix  A = [c R | t]:  image = A (chip_x, chip_y, 1).
   `padding` is rounded to float32 first, as dlib's Python binding does.

2. The chip rectangle. dlib keeps from A only the angle a = atan2(A10, A00), the scale
   s = |A[:, 0]| and the centre o = A (size/2, size/2, 1), and describes the chip as the
   rectangle of side w = size s - 1 (dlib's drectangle has width right - left + 1) centred
   at o, rotated by a. Chip pixel (x, y) then reads the image at
       o + R(a) (w / (size - 1)) ((x, y) - (size - 1) / 2)
   (`sampling_transform`): the chip's corner pixels on the rectangle's corners. This differs
   from A by up to half a pixel; dlib samples through this map, not A.

3. The pyramid. When the rectangle is much larger than the chip, dlib first shrinks the
   image with its pyramid_down<2> (5-tap [1 4 6 4 1] binomial filter in both directions,
   integer sums, every other pixel, divided by 256 with truncation; an n-pixel side becomes
   (n - 3) // 2, and output pixel j is centred on input pixel 2 j + 2): once for each time
   the rectangle, mapped down by p -> p / 2 - (1.25, 0.75) (dlib's rect_down; area counted
   as (right - left + 1)(bottom - top + 1)), still holds more than size^2 pixels, i.e.
   from about twice the chip's side. The chip is then read from the last level.
   The pyramid is built from the crop of the image to the bounding box of the rotated
   rectangle grown by 2, 6, 14, ... pixels (2 + 4 + ... for each level), clipped to the image
   and rounded to integers; with several faces of one image in one call, dlib uses the
   union of their boxes and the deepest of their levels (`shared_pyramid=True`).

4. Sampling. In that (cropped, shrunk) image, the chip's corners (0,0), (size-1,0),
   (0,size-1) go to the rectangle's rotated corners mapped down the same way; every chip
   pixel is read with bilinear interpolation in float64,
       (1 - fy) ((1 - fx) tl + fx tr) + fy ((1 - fx) bl + fx br),
   truncated to uint8 (not rounded). A pixel whose 2 x 2 neighbourhood is not wholly inside
   that image is 0 (black).

`extract_chips` does all of this in numpy (exact); `extract_chips_torch` does steps 3-4 on a
torch device (the pyramid's integer sums are exact in float32, the bilinear step runs in
float64), batched over the chips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's mean face shape for the iBUG 68 points 17-67 (x, y in [0, 1]), from
# get_face_chip_details in dlib/image_transforms/interpolation.h.
_MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689)
_MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182)
# the landmarks fitted: 17-67 without the brows (17-26) and the lower lip (55-59, 65-67)
FIT_POINTS = tuple(i for i in range(17, 68)
                   if not (17 <= i <= 26 or 55 <= i <= 59 or 65 <= i <= 67))


# --------------------------------------------------------------------------- the fit


def _mean(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean of 2-d points, summed in order (dlib's loop)."""
    sx = sy = 0.0
    for x, y in points:
        sx += x
        sy += y
    return sx / len(points), sy / len(points)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity [c R | t] taking the (n, 2) points `src` to `dst`.

    Umeyama (1991), eqs. 34-43, as dlib's find_similarity_transform: with means mu_s, mu_d,
    sigma_s = mean |s_i - mu_s|^2 and Sigma = mean (d_i - mu_d)(s_i - mu_s)^T = U D V^T,
    S = diag(1, -1) on the smaller singular value when det Sigma < 0 (no reflection),
    R = U S V^T, c = tr(D S) / sigma_s (1 when sigma_s = 0), t = mu_d - c R mu_s.
    """
    src_pts = [(float(x), float(y)) for x, y in np.asarray(src, dtype=np.float64)]
    dst_pts = [(float(x), float(y)) for x, y in np.asarray(dst, dtype=np.float64)]
    n = len(src_pts)
    msx, msy = _mean(src_pts)
    mdx, mdy = _mean(dst_pts)
    sigma = c00 = c01 = c10 = c11 = 0.0
    for (sx, sy), (dx, dy) in zip(src_pts, dst_pts, strict=True):
        fx, fy, tx, ty = sx - msx, sy - msy, dx - mdx, dy - mdy
        sigma += fx * fx + fy * fy
        c00 += tx * fx
        c01 += tx * fy
        c10 += ty * fx
        c11 += ty * fy
    sigma /= n
    cov = np.array([[c00 / n, c01 / n], [c10 / n, c11 / n]])
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(2)
    det = cov[0, 0] * cov[1, 1] - cov[0, 1] * cov[1, 0]
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1 if d[1] < d[0] else 0] = -1.0
    r = u @ np.diag(s) @ vt
    c = 1.0 if sigma == 0 else 1.0 / sigma * float(d[0] * s[0] + d[1] * s[1])
    m = c * r
    t = (mdx - (m[0, 0] * msx + m[0, 1] * msy), mdy - (m[1, 0] * msx + m[1, 1] * msy))
    return np.array([[m[0, 0], m[0, 1], t[0]], [m[1, 0], m[1, 1], t[1]]])


def chip_points(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """(33, 2) chip pixels of dlib's mean face for the landmarks FIT_POINTS."""
    padding = float(np.float32(padding))  # the binding's `float padding`
    pts = [((padding + _MEAN_FACE_X[i - 17]) / (2 * padding + 1) * size,
            (padding + _MEAN_FACE_Y[i - 17]) / (2 * padding + 1) * size) for i in FIT_POINTS]
    return np.array(pts, dtype=np.float64)


def chip_transform(landmarks68: np.ndarray, size: int = CHIP_SIZE,
                   padding: float = CHIP_PADDING) -> np.ndarray:
    """(2, 3) float64 similarity A, chip pixels -> image pixels: image = A (x, y, 1).

    dlib's get_face_chip_details for 68 landmarks (module doc, step 1). dlib's
    full_object_detection holds integer points: for parity with a dlib call made from
    rounded landmarks, pass the same rounded landmarks. The chip is then read through
    `sampling_transform(A, size)`, not A itself (module doc, step 2).
    """
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {lm.shape}")
    if size <= 0 or padding < 0:
        raise ValueError(f"size must be > 0 and padding >= 0 (got {size}, {padding})")
    return similarity_fit(chip_points(size, padding), lm[list(FIT_POINTS)])


# --------------------------------------------------------------------------- chip geometry


@dataclass(frozen=True)
class ChipRect:
    """dlib's chip_details: the rectangle (left, top, right, bottom; width right - left + 1)
    rotated by `angle` about its centre, read into a rows x cols chip."""

    left: float
    top: float
    right: float
    bottom: float
    angle: float
    rows: int
    cols: int

    @property
    def area(self) -> float:
        return _area((self.left, self.top, self.right, self.bottom))

    @property
    def center(self) -> tuple[float, float]:
        return (self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0


def chip_rect(transform: np.ndarray, size: int = CHIP_SIZE) -> ChipRect:
    """The chip rectangle of a `chip_transform` (module doc, step 2)."""
    a = np.asarray(transform, dtype=np.float64)
    m00, m01, b0 = (float(v) for v in a[0, :3])
    m10, m11, b1 = (float(v) for v in a[1, :3])
    angle = math.atan2(m10, m00)
    scale = math.sqrt(m00 * m00 + m10 * m10)
    cx, cy = size / 2.0, size / 2.0
    ox, oy = m00 * cx + m01 * cy + b0, m10 * cx + m11 * cy + b1
    half_w, half_h = (size * scale - 1) / 2, (size * scale - 1) / 2
    return ChipRect(ox - half_w, oy - half_h, ox + half_w, oy + half_h, angle, size, size)


def _rotate(center: tuple[float, float], p: tuple[float, float],
            angle: float) -> tuple[float, float]:
    """dlib's rotate_point: p turned by `angle` about `center`."""
    sa, ca = math.sin(angle), math.cos(angle)
    x, y = p[0] - center[0], p[1] - center[1]
    return ca * x - sa * y + center[0], sa * x + ca * y + center[1]


def _corner_map(rect: tuple[float, float, float, float], angle: float, rows: int,
                cols: int) -> np.ndarray:
    """2x3 affine putting chip corners (0,0), (cols-1,0), (0,rows-1) on the rotated corners
    tl, tr, bl of `rect` (dlib solves this exactly determined fit with a pseudo-inverse)."""
    left, top, right, bottom = rect
    center = ((left + right) / 2.0, (top + bottom) / 2.0)
    tl = _rotate(center, (left, top), angle)
    tr = _rotate(center, (right, top), angle)
    bl = _rotate(center, (left, bottom), angle)
    sx, sy = max(cols - 1, 1), max(rows - 1, 1)
    return np.array([[(tr[0] - tl[0]) / sx, (bl[0] - tl[0]) / sy, tl[0]],
                     [(tr[1] - tl[1]) / sx, (bl[1] - tl[1]) / sy, tl[1]]])


def sampling_transform(transform: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """(2, 3) map chip pixel -> full-resolution image pixel that dlib's sampling follows
    (module doc, step 2; the pyramid, when used, samples the same points of a shrunk copy)."""
    r = chip_rect(transform, size)
    return _corner_map((r.left, r.top, r.right, r.bottom), r.angle, r.rows, r.cols)


# --------------------------------------------------------------------------- the plan


def _area(rect: tuple[float, float, float, float]) -> float:
    """drectangle area: (right - left + 1) (bottom - top + 1), 0 when empty."""
    left, top, right, bottom = rect
    if top > bottom or left > right:
        return 0.0
    return (right - left + 1) * (bottom - top + 1)


def _rect_down(rect: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """pyramid_down<2>::rect_down: both corners p -> p / 2 - (1.25, 0.75)."""
    left, top, right, bottom = rect
    return left / 2.0 - 1.25, top / 2.0 - 0.75, right / 2.0 - 1.25, bottom / 2.0 - 0.75


def _lround(v: float) -> int:
    """C's lround: halves away from zero."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


@dataclass(frozen=True)
class ChipPlan:
    """How one chip is read: from `crop` (left, top, right, bottom, inclusive, of the image)
    shrunk `level` + 1 times by the pyramid (level -1: the crop itself), through the 2x3
    `affine` (chip pixel -> pixel of that image). `copy` set: dlib's fast path, a plain copy
    of the image rectangle (left, top, right, bottom) with 0 outside the image."""

    crop: tuple[int, int, int, int]
    level: int
    affine: np.ndarray
    copy: tuple[int, int, int, int] | None = None


def plan_chips(image_shape: tuple[int, ...], rects: list[ChipRect],
               shared_pyramid: bool = True) -> list[ChipPlan]:
    """dlib's extract_image_chips for the chips `rects` of one image (module doc, step 3).

    shared_pyramid=True is one dlib call with all these chips (one crop, the deepest level);
    False plans each chip as its own call (compute_face_descriptor, get_face_chip).
    """
    if not shared_pyramid:
        return [plan_chips(image_shape, [r])[0] for r in rects]
    height, width = image_shape[:2]
    image_rect = (0.0, 0.0, width - 1.0, height - 1.0)
    box: tuple[int, int, int, int] | None = None
    for r in rects:
        size = r.rows * r.cols
        grow = 2.0
        down = _rect_down((r.left, r.top, r.right, r.bottom))
        while _area(down) > size:
            down = _rect_down(down)
            grow = grow * 2 + 2
        center = r.center
        corners = [_rotate(center, p, r.angle) for p in
                   ((r.left, r.top), (r.right, r.top), (r.left, r.bottom), (r.right, r.bottom))]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        grown = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
        clipped = (max(grown[0], image_rect[0]), max(grown[1], image_rect[1]),
                   min(grown[2], image_rect[2]), min(grown[3], image_rect[3]))
        rounded = tuple(_lround(v) for v in clipped)
        if rounded[0] > rounded[2] or rounded[1] > rounded[3]:
            continue  # an empty rectangle adds nothing to the box
        if box is None:
            box = rounded
        else:
            box = (min(box[0], rounded[0]), min(box[1], rounded[1]),
                   max(box[2], rounded[2]), max(box[3], rounded[3]))
    if box is None:
        box = (0, 0, -1, -1)
    plans = []
    for r in rects:
        if r.angle == 0 and r.rows == r.bottom - r.top + 1 and r.cols == r.right - r.left + 1:
            copy = (_lround(r.left), _lround(r.top), _lround(r.right), _lround(r.bottom))
            plans.append(ChipPlan(box, -1, np.zeros((2, 3)), copy))
            continue
        rect = (r.left - box[0], r.top - box[1], r.right - box[0], r.bottom - box[1])
        level = -1
        while _area(_rect_down(rect)) > r.rows * r.cols:
            level += 1
            rect = _rect_down(rect)
        plans.append(ChipPlan(box, level, _corner_map(rect, r.angle, r.rows, r.cols)))
    return plans


# --------------------------------------------------------------------------- numpy execution


def pyramid_down(image: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2> of a uint8 (H, W, 3) image: ((H-3)//2, (W-3)//2, 3) uint8,
    floor(sum_{a,b} w_a w_b img[2i+a, 2j+b] / 256) with w = (1, 4, 6, 4, 1); empty when a side
    is <= 8."""
    h, w = image.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0) + image.shape[2:], np.uint8)
    oh, ow = (h - 3) // 2, (w - 3) // 2
    x = image.astype(np.int32)
    weights = (1, 4, 6, 4, 1)
    rows = sum(k * x[:, a:a + 2 * ow:2] for a, k in enumerate(weights))
    full = sum(k * rows[a:a + 2 * oh:2] for a, k in enumerate(weights))
    return (full // 256).astype(np.uint8)


def _bilinear_np(source: np.ndarray, affine: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Chip (rows, cols, C) uint8 read from `source` at affine (c, r, 1), dlib's bilinear rule
    (module doc, step 4)."""
    cc, rr = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    px = affine[0, 0] * cc + affine[0, 1] * rr + affine[0, 2]
    py = affine[1, 0] * cc + affine[1, 1] * rr + affine[1, 2]
    left, top = np.floor(px), np.floor(py)
    h, w = source.shape[:2]
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    li = np.where(inside, left, 0).astype(np.intp)
    ti = np.where(inside, top, 0).astype(np.intp)
    fx = (px - left)[..., None]
    fy = (py - top)[..., None]
    if not inside.any():
        return np.zeros((rows, cols) + source.shape[2:], np.uint8)
    t1, l1 = np.minimum(ti + 1, h - 1), np.minimum(li + 1, w - 1)
    tl, tr = source[ti, li].astype(np.float64), source[ti, l1].astype(np.float64)
    bl, br = source[t1, li].astype(np.float64), source[t1, l1].astype(np.float64)
    value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    value = np.where(inside[..., None], value, 0.0)
    return np.clip(np.trunc(value), 0, 255).astype(np.uint8)


def _copy_rect(image: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's basic_extract_image_chip: the rectangle's pixels, 0 outside the image."""
    left, top, right, bottom = rect
    out = np.zeros((bottom - top + 1, right - left + 1) + image.shape[2:], np.uint8)
    h, w = image.shape[:2]
    l0, t0, r0, b0 = max(left, 0), max(top, 0), min(right, w - 1), min(bottom, h - 1)
    if l0 <= r0 and t0 <= b0:
        out[t0 - top:b0 - top + 1, l0 - left:r0 - left + 1] = image[t0:b0 + 1, l0:r0 + 1]
    return out


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {image.dtype} "
                         f"{image.shape}")
    return image


def extract_chips(image: np.ndarray, transforms, size: int = CHIP_SIZE,
                  shared_pyramid: bool = False) -> np.ndarray:
    """(N, size, size, 3) uint8 chips of one uint8 RGB image, exactly as dlib reads them.

    `transforms`: one (2, 3) `chip_transform` or a sequence / (N, 2, 3) array of them.
    shared_pyramid=False matches one dlib call per face (compute_face_descriptor,
    get_face_chip); True matches one call with all the faces of the image
    (compute_face_descriptors, get_face_chips), where the faces share dlib's crop and depth.
    """
    image = _check_image(image)
    mats = np.asarray(transforms, dtype=np.float64).reshape(-1, 2, 3)
    rects = [chip_rect(m, size) for m in mats]
    plans = plan_chips(image.shape, rects, shared_pyramid)
    chips = np.zeros((len(plans), size, size, 3), np.uint8)
    levels: dict[tuple, list[np.ndarray]] = {}
    for i, plan in enumerate(plans):
        if plan.copy is not None:
            chips[i] = _copy_rect(image, plan.copy)
            continue
        left, top, right, bottom = plan.crop
        pyramid = levels.setdefault(plan.crop, [image[top:bottom + 1, left:right + 1]])
        while len(pyramid) < plan.level + 2:
            pyramid.append(pyramid_down(pyramid[-1]))
        chips[i] = _bilinear_np(pyramid[plan.level + 1], plan.affine, size, size)
    return chips


# --------------------------------------------------------------------------- torch execution


def _pyramid_down_torch(image):
    """pyramid_down on a (3, H, W) float32 tensor of integer values: exact (sums < 2^24)."""
    import torch
    import torch.nn.functional as F

    _, h, w = image.shape
    if h <= 8 or w <= 8:
        return image.new_zeros((3, 0, 0))
    oh, ow = (h - 3) // 2, (w - 3) // 2
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=image.dtype, device=image.device)
    x = image[:, None]  # (3, 1, H, W)
    x = F.conv2d(x, k.view(1, 1, 1, 5), stride=(1, 2))[..., :ow]
    x = F.conv2d(x, k.view(1, 1, 5, 1), stride=(2, 1))[:, :, :oh]
    return torch.div(x[:, 0], 256, rounding_mode="floor")


def extract_chips_torch(image, transforms, size: int = CHIP_SIZE,
                        shared_pyramid: bool = False, device=None):
    """`extract_chips` on a torch device: (N, size, size, 3) uint8 tensor.

    `image`: uint8 (H, W, 3) RGB, numpy or torch. The geometry is planned on the host (a few
    float64 scalars per chip); the crop, pyramid and float64 bilinear reads run on `device`
    (default: the image tensor's, else CPU), all chips in one gather.
    """
    import torch

    if isinstance(image, np.ndarray):
        shape = _check_image(image).shape
        image = torch.from_numpy(np.ascontiguousarray(image))
    else:
        shape = tuple(image.shape)
    device = torch.device(device) if device is not None else image.device
    image = image.to(device)
    mats = np.asarray(transforms, dtype=np.float64).reshape(-1, 2, 3)
    plans = plan_chips(shape, [chip_rect(m, size) for m in mats], shared_pyramid)
    n = len(plans)
    out = torch.zeros((n, size, size, 3), dtype=torch.uint8, device=device)
    if n == 0:
        return out
    sources, affines, index = [], [], []
    levels: dict[tuple, list] = {}
    for i, plan in enumerate(plans):
        if plan.copy is not None:
            out[i] = torch.from_numpy(_copy_rect(image.cpu().numpy(), plan.copy)).to(device)
            continue
        left, top, right, bottom = plan.crop
        if plan.crop not in levels:
            crop = image[top:bottom + 1, left:right + 1].permute(2, 0, 1).to(torch.float32)
            levels[plan.crop] = [crop]
        pyramid = levels[plan.crop]
        while len(pyramid) < plan.level + 2:
            pyramid.append(_pyramid_down_torch(pyramid[-1]))
        sources.append(pyramid[plan.level + 1])
        affines.append(plan.affine)
        index.append(i)
    if not index:
        return out
    out[index] = _bilinear_torch(sources, np.stack(affines), size)
    return out


def _bilinear_torch(sources: list, affines: np.ndarray, size: int):
    """dlib's bilinear read of chip k from sources[k] ((3, h_k, w_k) float32) at affines[k]
    (chip pixel -> source pixel), float64 arithmetic, truncated to uint8, 0 outside."""
    import torch

    device = sources[0].device
    n = len(sources)
    hs = torch.tensor([s.shape[1] for s in sources], device=device)
    ws = torch.tensor([s.shape[2] for s in sources], device=device)
    # pack the sources side by side in one flat buffer: chip k's pixel (y, x) at off_k + y w_k + x
    flat = torch.cat([s.reshape(3, -1) for s in sources] + [sources[0].new_zeros((3, 1))], 1)
    last = flat.shape[1] - 1  # reads of pixels outside their image are clamped, then masked
    offsets = torch.tensor(np.cumsum([0] + [s.shape[1] * s.shape[2] for s in sources])[:n],
                           device=device)
    a = torch.as_tensor(affines, dtype=torch.float64, device=device)  # (n, 2, 3)
    coords = torch.arange(size, dtype=torch.float64, device=device)
    cc, rr = coords.view(1, 1, size), coords.view(1, size, 1)
    px = a[:, 0, 0, None, None] * cc + a[:, 0, 1, None, None] * rr + a[:, 0, 2, None, None]
    py = a[:, 1, 0, None, None] * cc + a[:, 1, 1, None, None] * rr + a[:, 1, 2, None, None]
    left, top = torch.floor(px), torch.floor(py)
    h, w = hs.view(n, 1, 1), ws.view(n, 1, 1)
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    li = torch.where(inside, left, torch.zeros_like(left)).long()
    ti = torch.where(inside, top, torch.zeros_like(top)).long()
    base = offsets.view(n, 1, 1) + ti * w + li
    fx, fy = (px - left)[..., None], (py - top)[..., None]

    def at(idx):
        idx = idx.reshape(-1).clamp(0, last)
        return flat[:, idx].T.reshape(n, size, size, 3).to(torch.float64)

    tl, tr, bl, br = at(base), at(base + 1), at(base + w), at(base + w + 1)
    value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    value = torch.where(inside[..., None], value, torch.zeros_like(value))
    return torch.trunc(value).clamp_(0, 255).to(torch.uint8)
