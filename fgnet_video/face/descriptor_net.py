"""dlib's face recognition ResNet (the 128-d face descriptor) as a torch module.

Loads the very file dlib uses (`dlib_face_recognition_resnet_model_v1.dat` of
face_recognition_models, read by `fgnet_video.face.dlib_format`) and computes what
`dlib.face_recognition_model_v1(path).compute_face_descriptor(img, shape)` does with
num_jitters 0 or 1, given dlib's 150 x 150 face chip (`fgnet_video.face.face_chip`). With
`FaceDescriptorNet.from_file().describe(chips)`, the descriptors are within about 1e-6 (L2)
of dlib's in float32 on CPU; batched, on any device and dtype.

The network (dlib's examples/dnn_face_recognition_ex.cpp, `anet_type`), input side first:

- input (input_rgb_image_sized<150>): x_c = (pixel_c - mean_c) / 256 per RGB channel, the
  means (122.782, 117.001, 104.298) read from the file as float32;
- stem: conv 7x7/2 (32, no padding), affine, relu, max pool 3x3/2 (no padding): 150 -> 72
  -> 35;
- 14 residual blocks: y = relu(skip(x) + affine(conv3x3(relu(affine(conv3x3/s(x)))))),
  width 32 (x3, 35 x 35), 64 (x4, 17), 128 (x3, 8), 256 (x3, 4 x 4: see below), 256 (x1,
  2 x 2). The first block of each width after the first is a down block: its first conv has
  stride 2 and no padding, and its skip is a 2x2/2 average pool of x (other convs: 3x3/1,
  padding 1; other skips: x itself);
- head: mean over all positions (avg_pool_everything), then a 256 -> 128 matrix, no bias
  (fc_no_bias); loss_metric outputs that vector as it is (no normalisation).

dlib details that matter:
- conv is cross-correlation with a per-filter bias (the torch Conv2d convention); affine is
  out = gamma_c x + beta_c per channel (batch norm folded at training time);
- output sides are 1 + (n + 2 pad - k) // stride for convs and pools alike; pooling windows
  are clipped to the input (max ignores padding, average divides by the clipped count);
- add_prev of two tensors of different shapes (dlib's tt::add) gives the larger shape with
  each input zero-extended at the end of every axis. This happens: in the 8 -> 4 down
  block, the stride-2 conv gives 3 x 3 but the average pool 4 x 4, and in the down blocks
  the pooled skip has half the channels (the other channels get the conv branch only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fgnet_video.face.dlib_format import DlibLayer, read_network
from fgnet_video.fp32 import exact_fp32

DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def default_model_path() -> Path:
    """dlib's face recognition model shipped in face_recognition_models (not imported)."""
    from fgnet_video.face.landmarks import model_file

    return model_file(DESCRIPTOR_MODEL)


# --------------------------------------------------------------------------- layers


class Affine(nn.Module):
    """dlib's affine_ layer (conv mode): out = gamma_c * x + beta_c."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.from_numpy(np.array(gamma, np.float32)).reshape(
            1, -1, 1, 1), requires_grad=False)
        self.beta = nn.Parameter(torch.from_numpy(np.array(beta, np.float32)).reshape(
            1, -1, 1, 1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


class AvgPool(nn.Module):
    """dlib's avg_pool_: mean over each (clipped) window; window 0 = the whole input."""

    def __init__(self, nr: int, nc: int, stride: tuple[int, int],
                 padding: tuple[int, int]) -> None:
        super().__init__()
        self.window, self.stride, self.padding = (nr, nc), stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.window == (0, 0):
            return x.mean(dim=(2, 3), keepdim=True)
        window = (self.window[0] or x.shape[2], self.window[1] or x.shape[3])
        return F.avg_pool2d(x, window, self.stride, self.padding, count_include_pad=False)


def add_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: a + b, each zero-extended at the end of channels, rows and columns
    to the larger of the two shapes."""
    if a.shape == b.shape:
        return a + b
    shape = [max(p, q) for p, q in zip(a.shape, b.shape, strict=True)]

    def extend(t: torch.Tensor) -> torch.Tensor:
        pad = (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1])
        return F.pad(t, pad)

    return extend(a) + extend(b)


def _conv(layer: DlibLayer) -> nn.Conv2d:
    p = layer.params
    weight = torch.from_numpy(np.array(p["weight"], np.float32))
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], (p["nr"], p["nc"]),
                     stride=(p["stride_y"], p["stride_x"]),
                     padding=(p["padding_y"], p["padding_x"]), bias=p["bias"] is not None)
    conv.weight = nn.Parameter(weight, requires_grad=False)
    if p["bias"] is not None:
        conv.bias = nn.Parameter(torch.from_numpy(np.array(p["bias"], np.float32)).reshape(-1),
                                 requires_grad=False)
    if p.get("use_relu"):  # con_6 with its relu fused
        return nn.Sequential(conv, nn.ReLU())  # type: ignore[return-value]
    return conv


def _layer(layer: DlibLayer) -> nn.Module:
    """The torch module of one plain (non-branching) dlib layer."""
    p = layer.params
    if layer.kind == "con":
        return _conv(layer)
    if layer.kind == "affine":
        if p.get("mode", "conv") != "conv":
            raise ValueError("affine layer in fc mode is not supported here")
        return nn.Identity() if p.get("disabled") else Affine(p["gamma"], p["beta"])
    if layer.kind == "relu":
        return nn.Identity() if p.get("disabled") else nn.ReLU()
    if layer.kind == "max_pool":
        if p["nr"] == 0 or p["nc"] == 0:
            raise ValueError("max_pool over the whole input is not supported here")
        return nn.MaxPool2d((p["nr"], p["nc"]), (p["stride_y"], p["stride_x"]),
                            (p["padding_y"], p["padding_x"]))
    if layer.kind == "avg_pool":
        return AvgPool(p["nr"], p["nc"], (p["stride_y"], p["stride_x"]),
                       (p["padding_y"], p["padding_x"]))
    raise ValueError(f"unexpected dlib layer {layer.kind!r} here")


class Residual(nn.Module):
    """relu(skip(x) + main(x)) with dlib's add_prev (`add_extended`); skip is the identity
    or (down blocks) an average pool of x."""

    def __init__(self, main: Sequence[nn.Module], skip: nn.Module | None = None) -> None:
        super().__init__()
        self.main = nn.Sequential(*main)
        self.skip = skip if skip is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(add_extended(self.skip(x), self.main(x)))


# --------------------------------------------------------------------------- the network


class _Cursor:
    """Walks the parsed layers (input side first), checking their kinds."""

    def __init__(self, layers: Sequence[DlibLayer]) -> None:
        self.layers, self.i = list(layers), 0

    def peek(self, ahead: int = 0) -> str | None:
        j = self.i + ahead
        return self.layers[j].kind if j < len(self.layers) else None

    def take(self, *kinds: str) -> DlibLayer:
        layer = self.layers[self.i] if self.i < len(self.layers) else None
        if layer is None or layer.kind not in kinds:
            found = layer.kind if layer is not None else "the end"
            raise ValueError(f"dlib layer {self.i}: expected {'/'.join(kinds)}, found {found}")
        self.i += 1
        return layer


def _source_is(layer: DlibLayer, index: int) -> None:
    source = layer.params.get("source")
    if source is not None and source != index:
        raise ValueError(f"{layer.kind} refers to layer {source}, expected the tag at {index}")


def _residual(cur: _Cursor) -> Residual:
    """tag1, main..., then add_prev(tag1) [plain] or tag2, skip(tag1), avg_pool,
    add_prev(tag2) [down], then relu (dlib's ares / ares_down)."""
    tag1 = cur.i
    cur.take("tag")
    main = []
    while cur.peek() not in ("add_prev", "tag", None):
        main.append(_layer(cur.take("con", "affine", "relu", "max_pool", "avg_pool")))
    skip = None
    if cur.peek() == "tag":
        tag2 = cur.i
        cur.take("tag")
        _source_is(cur.take("skip"), tag1)
        skip = _layer(cur.take("avg_pool", "max_pool"))
        _source_is(cur.take("add_prev"), tag2)
    else:
        _source_is(cur.take("add_prev"), tag1)
    relu = cur.take("relu")
    if relu.params.get("disabled"):
        raise ValueError("a disabled relu after a residual block is not supported here")
    return Residual(main, skip)


class FaceDescriptorNet(nn.Module):
    """dlib's face recognition ResNet (module doc): `forward` takes the normalised
    (N, 3, 150, 150) input and gives the (N, 128) descriptors; `describe` takes chips."""

    def __init__(self, layers: Sequence[DlibLayer]) -> None:
        super().__init__()
        cur = _Cursor(layers)
        inp = cur.take("input_rgb_image_sized", "input_rgb_image")
        self.size = (int(inp.params.get("nr", 150)), int(inp.params.get("nc", 150)))
        mean = [inp.params[k] for k in ("avg_red", "avg_green", "avg_blue")]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        stem = []
        while cur.peek() not in ("tag", None):
            stem.append(_layer(cur.take("con", "affine", "relu", "max_pool", "avg_pool")))
        self.stem = nn.Sequential(*stem)
        blocks = []
        while cur.peek() == "tag":
            blocks.append(_residual(cur))
        self.blocks = nn.Sequential(*blocks)
        pool = cur.take("avg_pool")
        if pool.params["nr"] != 0 or pool.params["nc"] != 0:
            raise ValueError("expected avg_pool_everything before the fc layer")
        fc = cur.take("fc")
        weight = torch.from_numpy(np.array(fc.params["weight"], np.float32)).T.contiguous()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=fc.params["bias"] is not None)
        self.fc.weight = nn.Parameter(weight, requires_grad=False)
        if fc.params["bias"] is not None:
            self.fc.bias = nn.Parameter(torch.from_numpy(
                np.array(fc.params["bias"], np.float32)).reshape(-1), requires_grad=False)
        cur.take("loss_metric")
        if cur.peek() is not None:
            raise ValueError(f"unexpected dlib layers after the loss: {cur.peek()}")
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> FaceDescriptorNet:
        """The network of a dlib face recognition .dat file (default: dlib's own model)."""
        return cls(read_network(path if path is not None else default_model_path()).layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 128) descriptors of the normalised (N, 3, H, W) input (`preprocess`)."""
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(x.mean(dim=(2, 3)), 1))

    def preprocess(self, chips: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) network input of the chips, on this module's device and dtype:
        (pixel - mean) / 256, computed in float32 as dlib does.

        `chips`: uint8 (N, H, W, 3) RGB (numpy or torch; one (H, W, 3) chip is a batch of
        one), or a float tensor of pixel values 0..255, (N, H, W, 3) or (N, 3, H, W).
        """
        param = self.fc.weight
        x = torch.as_tensor(chips) if isinstance(chips, np.ndarray) else chips
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4:
            raise ValueError(f"expected chips (N, H, W, 3), got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8 or x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        if tuple(x.shape[1:]) != (3, *self.size):
            raise ValueError(f"expected {self.size[0]}x{self.size[1]} RGB chips, got shape "
                             f"{tuple(x.shape)}")
        x = x.to(device=param.device).to(torch.float32)
        return ((x - self.mean) / 256.0).to(param.dtype)

    @torch.inference_mode()
    def describe(self, chips: np.ndarray | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(N, 128) float32 descriptors of N chips (`preprocess` says which), in batches
        of `batch_size`, on this module's device and dtype (float32: dlib's numbers; IEEE
        fp32 on CUDA too, `fgnet_video.fp32`)."""
        x = torch.as_tensor(chips) if isinstance(chips, np.ndarray) else chips
        if x.dim() == 3:
            x = x[None]
        with exact_fp32(self.fc.weight.device):
            out = [self(self.preprocess(x[i:i + batch_size])).float()
                   for i in range(0, x.shape[0], batch_size)]
        if not out:
            return torch.zeros((0, self.fc.out_features), device=self.fc.weight.device)
        return torch.cat(out)
