"""Reader for dlib's DNN serialization (the `.dat` files `dlib.cnn_face_detection_model_v1`
and `dlib.face_recognition_model_v1` load), with numpy and the standard library only.

`read_network(path)` returns a `DlibNetwork` whose `layers` run from the INPUT layer to the
LOSS layer, each a `DlibLayer(kind, params)`.

Encodings (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h), all little-endian:

- integer (any width, signed or unsigned): one control byte, then `n` value bytes, least
  significant first. The control byte holds `n` (1..8) in its low 4 bits; bit 0x80 marks a
  negative value (magnitude in the value bytes). Zero is `01 00`. Bits 0x70 are always 0.
- bool: one ASCII byte, '1' or '0'. uint8 (e.g. mmod's assume_image_pyramid): one raw byte.
- float / double: two integers, mantissa (int64) then exponent (int16); the value is
  `mantissa * 2**exponent`, except exponent 32000 = +inf, 32001 = -inf, 32002 = NaN. (Files
  from before 2013 wrote ASCII text ending in a space; a first byte with any of bits 0x70
  set marks that form, which is also read here.)
- string: its length (integer), then that many bytes (no terminator).
- std::vector: its length (integer), then the items.
- resizable_tensor: integer version (2), num_samples, k, nr, nc (integers), then
  num_samples*k*nr*nc float32 in row-major (n, k, r, c) order.
- alias_tensor (a view into a layer's `params`): integer version (1), then its
  num_samples, k, nr, nc; no data.

Network nesting (dlib/dnn/core.h): a file holds the loss layer first and each wrapper writes
its version BEFORE its subnetwork and its layer AFTER it, so the bytes are

    add_loss_layer: version 1, loss details, subnetwork
    add_layer:      version 2, subnetwork, layer details, 3 bools, 3 tensors (x_grad,
                    cached_output, params_grad)
    add_layer over the input layer: version 2|3, input layer, layer details, 3 bools,
                    3 tensors (x_grad, cached_output, grad_final), [v3: sample expansion]
    add_tag_layer / add_skip_layer: version 1, subnetwork (nothing after it)
    add_tag_layer over the input layer: version 1|2, input layer, 2 tensors, 1 bool,
                    [v2: sample expansion]

i.e. all wrapper versions come first (outermost first), then the input layer, then the
layers from the input side out. Layer details start with a version string ("con_6",
"fc_3", "relu_2", "affine_2", "bn_con2", "max_pool_2", "avg_pool_2", "add_prev_",
"input_rgb_image_pyramid2", "loss_mmod_", "loss_metric_2", ...), which names the layer.

Tag and skip wrappers are byte-identical (version 1, no payload) and no tag number is
stored anywhere (nor in add_prev_), so they are told apart here by dlib's ResNet idiom (see
`_resolve_tags`); those layers and every add_prev carry `params["inferred"] = True`.

Parameter layouts (numpy float32, shapes as dlib's alias tensors give them):

- con: `weight` (num_filters, k, nr, nc) -- cross-correlation filters, the same layout as a
  torch Conv2d weight; `bias` (num_filters,) or None; strides and paddings.
- fc: `weight` (num_inputs, num_outputs) -- dlib computes `x @ weight + bias` with x
  flattened to num_inputs (a torch Linear weight is its transpose); `bias` (num_outputs,)
  or None.
- affine: `gamma`, `beta`, both shaped (1, k, 1, 1) in conv mode (per channel) or
  (1, k, nr, nc) in fc mode (per element): out = gamma * x + beta.
- bn_con / bn_fc: gamma, beta, running_means, running_variances (same shapes as affine's),
  eps; inference computes gamma * (x - mean) / sqrt(var + eps) + beta.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["DlibLayer", "DlibNetwork", "read_network"]

_MAX_INT_BYTES = 8
_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002
_MAX_NAME = 64  # longest layer version string we look for when peeking


@dataclass(frozen=True)
class DlibLayer:
    """One layer of a dlib network: `kind` (e.g. "con", "relu", "loss_mmod") and its
    read-only `params` (numpy arrays and config ints/floats/strings/bools)."""

    kind: str
    params: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class DlibNetwork:
    """A parsed dlib network: `layers` from the input layer (first) to the loss (last)."""

    path: str
    layers: tuple[DlibLayer, ...]
    trailing_bytes: int = 0  # bytes after the network (dlib files may hold more objects)

    @property
    def input(self) -> DlibLayer:
        """The input layer (e.g. input_rgb_image_pyramid)."""
        return self.layers[0]

    @property
    def loss(self) -> DlibLayer:
        """The loss layer (e.g. loss_mmod)."""
        return self.layers[-1]

    @property
    def loss_options(self) -> Mapping[str, Any]:
        """The loss layer's options (for loss_mmod: detector windows, NMS thresholds...)."""
        return self.loss.params

    def kinds(self) -> list[str]:
        """The layer kinds in order, input first."""
        return [layer.kind for layer in self.layers]


class _Malformed(Exception):
    """Raised inside the reader; `read_network` turns it into a ValueError naming the file."""


# ----------------------------------------------------------------------------------------
# primitive decoding


class _Stream:
    """A cursor over the file's bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Malformed(f"file ends inside {what}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def int_(self, what: str, *, signed: bool = True) -> int:
        """dlib's integer: control byte (size in low 4 bits, 0x80 = negative), then bytes."""
        control = self.byte(what)
        size = control & 0x0F
        if control & 0x70 or size == 0 or size > _MAX_INT_BYTES:
            raise _Malformed(f"bad integer control byte 0x{control:02x} in {what}")
        if control & 0x80 and not signed:
            raise _Malformed(f"negative value for unsigned {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def uint(self, what: str) -> int:
        return self.int_(what, signed=False)

    def bool_(self, what: str) -> bool:
        ch = self.byte(what)
        if ch not in (0x30, 0x31):
            raise _Malformed(f"bad bool byte 0x{ch:02x} in {what}")
        return ch == 0x31

    def float_(self, what: str) -> float:
        """mantissa (int64) * 2**exponent (int16), or the old ASCII form ending in ' '."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            return self._ascii_float(what)
        mantissa = self.int_(what)
        exponent = self.int_(what)
        if not -(1 << 63) <= mantissa < (1 << 63) or not -(1 << 15) <= exponent < (1 << 15):
            raise _Malformed(f"float out of range in {what}")
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            return math.copysign(math.inf, mantissa)

    def _ascii_float(self, what: str) -> float:
        end = self.data.find(b" ", self.pos, self.pos + 64)
        if end < 0:
            raise _Malformed(f"bad float in {what}")
        text = self.take(end - self.pos, what).decode("ascii", "replace")
        self.pos += 1
        special = {"inf": math.inf, "ninf": -math.inf, "NaN": math.nan}
        try:
            return special[text] if text in special else float(text)
        except ValueError:
            raise _Malformed(f"bad float {text!r} in {what}") from None

    def string(self, what: str) -> str:
        size = self.uint(what)
        raw = self.take(size, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed(f"{what} is not text") from None

    def peek_name(self) -> str | None:
        """The string at the cursor if it looks like a layer version string, else None;
        the cursor does not move."""
        start = self.pos
        try:
            size = self.uint("name")
            if not 0 < size <= _MAX_NAME:
                return None
            raw = self.take(size, "name")
        except _Malformed:
            return None
        finally:
            self.pos = start
        if not all(0x21 <= b < 0x7F for b in raw):
            return None
        return raw.decode("ascii")

    def tensor(self, what: str) -> np.ndarray:
        """resizable_tensor: version 2, n, k, nr, nc, then float32 data (little-endian)."""
        version = self.int_(what)
        if version != 2:
            raise _Malformed(f"unexpected tensor version {version} in {what}")
        shape = tuple(self.int_(what) for _ in range(4))
        if any(d < 0 for d in shape):
            raise _Malformed(f"negative tensor size {shape} in {what}")
        count = math.prod(shape)
        raw = self.take(4 * count, what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """alias_tensor: version 1, then its n, k, nr, nc."""
        version = self.int_(what)
        if version != 1:
            raise _Malformed(f"unexpected alias_tensor version {version} in {what}")
        return tuple(self.int_(what) for _ in range(4))  # type: ignore[return-value]


def _slice_params(params: np.ndarray, shape: tuple[int, ...], offset: int,
                  what: str) -> np.ndarray:
    """The `shape`d view that dlib's alias_tensor takes of `params` at `offset`."""
    flat = params.reshape(-1)
    count = math.prod(shape)
    if offset + count > flat.size:
        raise _Malformed(f"{what}: parameter tensor too small ({flat.size} < "
                         f"{offset + count})")
    return flat[offset:offset + count].reshape(shape).copy()


# ----------------------------------------------------------------------------------------
# layer details


def _learning_multipliers(s: _Stream, what: str) -> dict[str, float]:
    return {name: s.float_(what) for name in (
        "learning_rate_multiplier", "weight_decay_multiplier",
        "bias_learning_rate_multiplier", "bias_weight_decay_multiplier")}


def _read_con(s: _Stream, version: str) -> DlibLayer:
    """con_4/5/6: params, num_filters, nr, nc, stride_y, stride_x, padding_y, padding_x,
    filters (alias), biases (alias), 4 multipliers, [5+: use_bias], [6: use_relu]."""
    what = f"layer {version}"
    params = s.tensor(what)
    num_filters = s.int_(what)
    nr, nc = s.int_(what), s.int_(what)
    stride_y, stride_x = s.int_(what), s.int_(what)
    padding_y, padding_x = s.int_(what), s.int_(what)
    filters = s.alias(what)
    biases = s.alias(what)
    multipliers = _learning_multipliers(s, what)
    use_bias = s.bool_(what) if version in ("con_5", "con_6") else True
    use_relu = s.bool_(what) if version == "con_6" else False
    if filters[0] != num_filters:
        raise _Malformed(f"{what}: filter tensor {filters} does not hold {num_filters} filters")
    weight = _slice_params(params, filters, 0, what)
    bias = _slice_params(params, (num_filters,), weight.size, what) if use_bias else None
    return DlibLayer("con", {
        "weight": weight, "bias": bias, "num_filters": num_filters, "nr": nr, "nc": nc,
        "stride_y": stride_y, "stride_x": stride_x, "padding_y": padding_y,
        "padding_x": padding_x, "use_bias": use_bias, "use_relu": use_relu,
        "bias_alias": biases, "version": version, **multipliers})


def _read_fc(s: _Stream, version: str) -> DlibLayer:
    """fc_2/3: num_outputs, num_inputs, params, weights (alias), biases (alias), bias_mode,
    4 multipliers, [3: use_bias]."""
    what = f"layer {version}"
    num_outputs, num_inputs = s.uint(what), s.uint(what)
    params = s.tensor(what)
    weights = s.alias(what)
    s.alias(what)  # biases: (1, num_outputs) after the weights when there is a bias
    bias_mode = s.int_(what)  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    multipliers = _learning_multipliers(s, what)
    use_bias = s.bool_(what) if version == "fc_3" else True
    has_bias = bias_mode == 0 and use_bias
    weight = _slice_params(params, (num_inputs, num_outputs), 0, what)
    if math.prod(weights) != weight.size:
        raise _Malformed(f"{what}: weight tensor {weights} is not {num_inputs}x{num_outputs}")
    bias = _slice_params(params, (num_outputs,), weight.size, what) if has_bias else None
    return DlibLayer("fc", {
        "weight": weight, "bias": bias, "num_outputs": num_outputs, "num_inputs": num_inputs,
        "bias_mode": bias_mode, "use_bias": has_bias, "version": version, **multipliers})


def _read_affine(s: _Stream, version: str) -> DlibLayer:
    """affine_/affine_2: params, gamma (alias), beta (alias), mode, [2: disabled]."""
    what = f"layer {version}"
    params = s.tensor(what)
    gamma_shape, beta_shape = s.alias(what), s.alias(what)
    mode = s.int_(what)  # 0 = CONV_MODE (per channel), 1 = FC_MODE (per element)
    disabled = s.bool_(what) if version == "affine_2" else False
    gamma = _slice_params(params, gamma_shape, 0, what)
    beta = _slice_params(params, beta_shape, gamma.size, what)
    return DlibLayer("affine", {
        "gamma": gamma, "beta": beta, "mode": "fc" if mode == 1 else "conv",
        "disabled": disabled, "version": version})


def _read_bn(s: _Stream, version: str) -> DlibLayer:
    """bn_con2/bn_fc2: params, gamma, beta (aliases), means, invstds, running_means,
    running_variances (tensors), num_updates, running_stats_window_size, 4 multipliers,
    eps."""
    what = f"layer {version}"
    params = s.tensor(what)
    gamma_shape, beta_shape = s.alias(what), s.alias(what)
    means, invstds = s.tensor(what), s.tensor(what)
    running_means, running_variances = s.tensor(what), s.tensor(what)
    num_updates, window = s.uint(what), s.uint(what)
    multipliers = _learning_multipliers(s, what)
    eps = s.float_(what)
    gamma = _slice_params(params, gamma_shape, 0, what)
    beta = _slice_params(params, beta_shape, gamma.size, what)
    return DlibLayer("bn_con" if version == "bn_con2" else "bn_fc", {
        "gamma": gamma, "beta": beta,
        "running_means": running_means.reshape(gamma_shape),
        "running_variances": running_variances.reshape(gamma_shape),
        "means": means, "invstds": invstds, "eps": eps, "num_updates": num_updates,
        "running_stats_window_size": window, "version": version, **multipliers})


def _read_pool(kind: str) -> Any:
    def read(s: _Stream, version: str) -> DlibLayer:
        """max_pool_2/avg_pool_2: nr, nc, stride_y, stride_x, padding_y, padding_x (nr or
        nc 0 = the whole input, e.g. avg_pool_everything)."""
        what = f"layer {version}"
        values = [s.int_(what) for _ in range(6)]
        names = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(kind, {**dict(zip(names, values, strict=True)), "version": version})
    return read


def _read_relu(s: _Stream, version: str) -> DlibLayer:
    """relu_ (nothing) or relu_2 (disabled flag)."""
    disabled = s.bool_(f"layer {version}") if version == "relu_2" else False
    return DlibLayer("relu", {"disabled": disabled, "version": version})


def _read_add_prev(s: _Stream, version: str) -> DlibLayer:
    """add_prev_: no payload (the tag it adds is a template argument, not stored)."""
    return DlibLayer("add_prev", {"version": version})


_LAYER_READERS = {
    "con_4": _read_con, "con_5": _read_con, "con_6": _read_con,
    "fc_2": _read_fc, "fc_3": _read_fc,
    "affine_": _read_affine, "affine_2": _read_affine,
    "bn_con2": _read_bn, "bn_fc2": _read_bn,
    "max_pool_2": _read_pool("max_pool"), "avg_pool_2": _read_pool("avg_pool"),
    "relu_": _read_relu, "relu_2": _read_relu,
    "add_prev_": _read_add_prev,
}


def _read_input(s: _Stream) -> DlibLayer:
    """The input layer: version string, mean colour (3 floats), then per type: pyramid
    paddings (input_rgb_image_pyramid2), or the fixed size (input_rgb_image_sized)."""
    version = s.string("input layer name")
    what = f"input layer {version}"
    if version not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2",
                       "input_rgb_image_sized", "input_rgb_image"):
        raise _Malformed(f"unsupported input layer {version!r}")
    avg = {name: float(np.float32(s.float_(what)))
           for name in ("avg_red", "avg_green", "avg_blue")}
    if version.startswith("input_rgb_image_pyramid"):
        padding, outer = (s.uint(what), s.uint(what)) if version.endswith("2") else (10, 11)
        return DlibLayer("input_rgb_image_pyramid", {
            **avg, "pyramid_padding": padding, "pyramid_outer_padding": outer,
            "version": version})
    if version == "input_rgb_image_sized":
        nr, nc = s.uint(what), s.uint(what)
        return DlibLayer("input_rgb_image_sized", {**avg, "nr": nr, "nc": nc,
                                                   "version": version})
    return DlibLayer("input_rgb_image", {**avg, "version": version})


def _read_overlap(s: _Stream, what: str) -> dict[str, float]:
    """test_box_overlap: iou_thresh, percent_covered_thresh (doubles)."""
    return {"iou_thresh": s.float_(what), "percent_covered_thresh": s.float_(what)}


def _read_mmod_options(s: _Stream) -> dict[str, Any]:
    """mmod_options v1..4: detector windows (v1: one width/height; else a vector of
    {version, width, height, [v2: label]}), loss per false alarm / missed target, truth
    match IoU, overlaps_nms, overlaps_ignore, [v3: assume_image_pyramid byte],
    [v4: use_bounding_box_regression, bbr_lambda]."""
    what = "loss_mmod_ options"
    version = s.int_(what)
    if not 1 <= version <= 4:
        raise _Malformed(f"unexpected mmod_options version {version}")
    windows: list[dict[str, Any]] = []
    if version == 1:
        windows.append({"width": s.uint(what), "height": s.uint(what), "label": ""})
    else:
        for _ in range(s.uint(what)):
            window_version = s.int_(what)
            if window_version not in (1, 2):
                raise _Malformed(f"unexpected detector window version {window_version}")
            width, height = s.uint(what), s.uint(what)
            label = s.string(what) if window_version == 2 else ""
            windows.append({"width": width, "height": height, "label": label})
    options: dict[str, Any] = {
        "detector_windows": tuple(MappingProxyType(w) for w in windows),
        "loss_per_false_alarm": s.float_(what),
        "loss_per_missed_target": s.float_(what),
        "truth_match_iou_threshold": s.float_(what),
        "overlaps_nms": MappingProxyType(_read_overlap(s, what)),
        "overlaps_ignore": MappingProxyType(_read_overlap(s, what)),
        "assume_image_pyramid": True, "use_bounding_box_regression": False,
        "bbr_lambda": 100.0, "options_version": version}
    if version >= 3:
        options["assume_image_pyramid"] = s.byte(what) == 1
    if version >= 4:
        options["use_bounding_box_regression"] = s.bool_(what)
        options["bbr_lambda"] = s.float_(what)
    return options


def _read_loss(s: _Stream) -> DlibLayer:
    """The loss details: "loss_mmod_" + mmod_options, or "loss_metric_"/"loss_metric_2"
    (+ margin, distance threshold as floats)."""
    version = s.string("loss layer name")
    if version == "loss_mmod_":
        return DlibLayer("loss_mmod", {**_read_mmod_options(s), "version": version})
    if version == "loss_metric_":
        return DlibLayer("loss_metric", {"margin": 0.1, "dist_thresh": 0.75,
                                         "version": version})
    if version == "loss_metric_2":
        margin = float(np.float32(s.float_("loss_metric_2")))
        dist = float(np.float32(s.float_("loss_metric_2")))
        return DlibLayer("loss_metric", {"margin": margin, "dist_thresh": dist,
                                         "version": version})
    raise _Malformed(f"unsupported loss layer {version!r}")


def _read_details(s: _Stream) -> DlibLayer:
    version = s.string("layer name")
    reader = _LAYER_READERS.get(version)
    if reader is None:
        raise _Malformed(f"unsupported layer {version!r}")
    return reader(s, version)


# ----------------------------------------------------------------------------------------
# wrappers


_INPUT_NAMES = {"input_rgb_image_pyramid", "input_rgb_image_pyramid2",
                "input_rgb_image_sized", "input_rgb_image"}


def _skip_add_layer_tail(s: _Stream, tensors: int) -> None:
    """add_layer's state after its details: 3 bools, then `tensors` tensors (gradients and
    cached outputs, unused for inference)."""
    for _ in range(3):
        s.bool_("add_layer flags")
    for _ in range(tensors):
        s.tensor("add_layer state")


def _read_wrappers(s: _Stream) -> list[DlibLayer | None]:
    """The subnetwork below the loss: layers from the input side out, with None for each
    tag-or-skip wrapper (resolved later)."""
    versions: list[int] = []
    while s.peek_name() not in _INPUT_NAMES:
        if s.left() == 0:
            raise _Malformed("file ends before the input layer")
        versions.append(s.int_("layer wrapper version"))
        if versions[-1] not in (1, 2, 3) or len(versions) > 100_000:
            raise _Malformed(f"unexpected layer wrapper version {versions[-1]}")
    if not versions:
        raise _Malformed("no layers between the loss and the input layer")
    layers: list[DlibLayer | None] = [_read_input(s)]
    innermost = versions.pop()
    if s.peek_name() in _LAYER_READERS:  # add_layer over the input layer
        if innermost not in (2, 3):
            raise _Malformed(f"unexpected add_layer version {innermost} over the input")
        layers.append(_read_details(s))
        _skip_add_layer_tail(s, 3)
        if innermost == 3:
            s.uint("sample expansion factor")
    else:  # add_tag_layer over the input layer
        if innermost not in (1, 2):
            raise _Malformed(f"unexpected tag layer version {innermost} over the input")
        s.tensor("tag layer state")
        s.tensor("tag layer state")
        s.bool_("tag layer flag")
        if innermost == 2:
            s.uint("sample expansion factor")
        layers.append(None)
    for version in reversed(versions):
        if version == 2:
            layers.append(_read_details(s))
            _skip_add_layer_tail(s, 3)
        elif version == 1:
            layers.append(None)
        else:
            raise _Malformed(f"unexpected layer wrapper version {version}")
    return layers


def _resolve_tags(layers: list[DlibLayer | None]) -> list[DlibLayer]:
    """Name the tag-or-skip wrappers and link skips and add_prevs to their tags.

    The file stores neither tag numbers nor which wrapper is a tag and which a skip, so
    this follows dlib's residual idioms (dnn_imagenet/face-recognition ResNets):
    `add_prev1<block<tag1<x>>>` and `add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>`.
    In a run of consecutive wrappers the last is a skip when the run has two or more,
    the others are tags. A skip returns the output of the nearest tag before its run; an
    add_prev adds the output of the nearest tag before it. Both get `params["source"]`,
    the index (in `layers`) of that tag, and `params["inferred"] = True`.
    """
    out: list[DlibLayer] = []
    tags: list[int] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if layer is None:
            run_end = i
            while run_end + 1 < len(layers) and layers[run_end + 1] is None:
                run_end += 1
            before = tags[-1] if tags else None
            for j in range(i, run_end + 1):
                if j == run_end and run_end > i:
                    if before is None:
                        raise _Malformed("a skip layer with no tag before it")
                    out.append(DlibLayer("skip", {"source": before, "inferred": True}))
                else:
                    out.append(DlibLayer("tag", {"inferred": True}))
                    tags.append(j)
            i = run_end + 1
            continue
        if layer.kind == "add_prev":
            if not tags:
                raise _Malformed("an add_prev layer with no tag before it")
            layer = DlibLayer("add_prev", {**layer.params, "source": tags[-1],
                                           "inferred": True})
        out.append(layer)
        i += 1
    return out


def _freeze(layer: DlibLayer) -> DlibLayer:
    for value in layer.params.values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return DlibLayer(layer.kind, MappingProxyType(dict(layer.params)))


def read_network(path: str | Path) -> DlibNetwork:
    """Parse a dlib DNN file; layers run from the input (first) to the loss (last).

    Raises ValueError naming the file and the problem when it is not such a network (or
    uses a layer type this reader does not know), OSError when it cannot be read.
    """
    path = Path(path)
    data = path.read_bytes()
    s = _Stream(data)
    try:
        if data[:2] == b"BZ" or data[:2] == b"\x1f\x8b":
            raise _Malformed("file is compressed (bzip2/gzip); decompress it first")
        version = s.int_("loss layer version")
        if version != 1:
            raise _Malformed(f"unexpected add_loss_layer version {version}")
        loss = _read_loss(s)
        layers = _resolve_tags(_read_wrappers(s))
        if s.peek_name() in _LAYER_READERS:
            raise _Malformed("layers left after the network (a pre-2016 file with "
                             "add_layer version 1, which this reader does not support)")
    except _Malformed as exc:
        raise ValueError(f"{path}: not a dlib DNN network file this reader supports: "
                         f"{exc} (at byte {s.pos} of {len(data)})") from None
    frozen = tuple(_freeze(layer) for layer in [*layers, loss])
    return DlibNetwork(str(path), frozen, trailing_bytes=s.left())
