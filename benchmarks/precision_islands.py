"""Which parts of FG-Net must stay in fp32 under bf16/fp16 autocast: heatmap and score errors
against fp32 on real aligned faces, for each choice of fp32 "islands".

    python benchmarks/precision_islands.py --weights bp4d.safetensors [--device cpu] [--faces 5]

Variants, each under autocast in the given dtype (the convolutions always in that dtype):

    none          everything under autocast
    linears       every EqualLinear in fp32: pSp style heads, mapping MLP, modulation (styles)
    coefficients  each modulated conv's style and demodulation in fp32
    both          linears + coefficients (what `fp32_sensitive=True`, the default, does)
    both + head   also the interpreter's last conv (the raw heatmaps) in fp32

Prints, against fp32: max and mean |heatmap difference|, max |score difference| and the AU
decisions agreeing on (face, AU) pairs whose fp32 |score| > 0.02. fp16 runs on the CPU too
(slowly): this script calls the model directly, not through InferenceEngine.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from model_speed import real_faces
from torch import nn

from fgnet_video.inference.agreement import compare_predictions
from fgnet_video.inference.devices import resolve_device
from fgnet_video.inference.engine import Prediction, normalise_faces
from fgnet_video.inference.speed import FastSettings, ModelRunner, keep_sensitive_fp32
from fgnet_video.model.layers import EqualLinear, full_precision
from fgnet_video.model.stylegan2 import ModulatedConv2d
from fgnet_video.weights.checkpoints import load_model

VARIANTS = {  # name: (EqualLinear in fp32, coefficients in fp32, head conv in fp32)
    "none": (False, False, False),
    "linears": (True, False, False),
    "coefficients": (False, True, False),
    "both": (True, True, False),
    "both + head": (True, True, True),
}


class Fp32Conv(nn.Module):
    """Runs the wrapped module with autocast off on fp32 input."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x.device.type):
            return self.inner(x.float())


def set_islands(model: nn.Module, linears: bool, coefficients: bool, head: bool) -> None:
    keep_sensitive_fp32(model, False)
    for module in model.modules():
        if isinstance(module, EqualLinear):
            module.fp32_under_autocast = linears
        elif isinstance(module, ModulatedConv2d):
            module.fp32_coefficients = coefficients
    last = model.interpreter.layer(model.config.n_levels - 1)
    inner = last[-1].inner if isinstance(last[-1], Fp32Conv) else last[-1]
    last[-1] = Fp32Conv(inner) if head else inner


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, n_aus: int) -> Prediction:
    heatmaps, scores = ModelRunner(model, FastSettings(), dtype, n_aus)(x)
    return Prediction(scores.cpu().numpy(), heatmaps.cpu().numpy())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="converted .safetensors")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--faces", type=int, default=5, help="real aligned faces")
    parser.add_argument("--dtypes", default="bf16,fp16")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    loaded = load_model(args.weights)
    model, n_aus = loaded.model.to(device).eval(), len(loaded.aus)
    faces = torch.from_numpy(real_faces(args.faces)).to(device)
    x = normalise_faces(faces, model.config.image_size)
    reference = predict(model, x, torch.float32, n_aus)
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    print(f"{len(faces)} real faces, {args.weights}, device {device}")
    print("| dtype | fp32 islands | max abs d heatmap | mean abs d heatmap | max abs d score "
          "| AU agree (pairs) |")
    print("|---|---|---|---|---|---|")
    for name in args.dtypes.split(","):
        for variant, switches in VARIANTS.items():
            set_islands(model, *switches)
            other = predict(model, x, dtypes[name], n_aus)
            agreement = compare_predictions(reference, other)
            mean_diff = float(np.abs(reference.heatmaps - other.heatmaps).mean())
            print(f"| {name} | {variant} | {agreement.max_heatmap_diff:.3g} | {mean_diff:.3g} | "
                  f"{agreement.max_score_diff:.3g} | {100 * agreement.decisions:.2f}% "
                  f"({agreement.pairs}) |", flush=True)
    set_islands(model, True, True, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
