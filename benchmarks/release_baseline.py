"""The FG-Net release's own computation, as the benchmarks' baseline: an `InferenceEngine`
whose model computes the way the research code does, each part switchable on its own.

- fused_modconv: the modulated convs build each sample's weight c * W * s * d and run one
  grouped conv (`fgnet_video.model.stylegan2.set_modconv_order`), instead of scaling the
  activations around one shared conv;
- render_rgb: the generator's RGB image is rendered too (FG-Net never reads it);
- reference_ops: the StyleGAN2 ops run their pure-PyTorch references (impl "ref").

All three give the default computation's results up to fp32 rounding
(tests/test_release_baseline.py); benchmarks/model_speed.py times them.
"""

from __future__ import annotations

from fgnet_video.inference.engine import InferenceEngine
from fgnet_video.inference.speed import ModelRunner
from fgnet_video.kernels import set_kernel_impl
from fgnet_video.model.fgnet import FGNet
from fgnet_video.model.stylegan2 import set_modconv_order
from fgnet_video.weights.loaded import LoadedModel

RELEASE_PARTS = ("fused_modconv", "render_rgb", "reference_ops")


class ReleaseEngine(InferenceEngine):
    """An engine computing the release's way, in the parts given (see the module docstring);
    every other keyword is the engine's own."""

    def __init__(self, loaded: LoadedModel, *, fused_modconv: bool = False,
                 render_rgb: bool = False, reference_ops: bool = False, **options):
        self.fused_modconv, self.render_rgb = fused_modconv, render_rgb
        self.reference_ops = reference_ops
        super().__init__(loaded, **options)

    def _prepare(self, model: FGNet) -> FGNet:
        model = super()._prepare(model)
        set_modconv_order(model.g_all, self.fused_modconv)
        if self.reference_ops:
            set_kernel_impl(model, "ref")
        return model

    def _model_runner(self) -> ModelRunner:
        runner = super()._model_runner()
        runner.render_rgb = self.render_rgb
        return runner


def engine_for(loaded: LoadedModel, switches: dict, **options) -> InferenceEngine:
    """An engine with `switches` (release parts and engine switches mixed) and `options`:
    a ReleaseEngine when any release part is on, else a plain InferenceEngine."""
    release = any(part in switches for part in RELEASE_PARTS)
    return (ReleaseEngine if release else InferenceEngine)(loaded, **switches, **options)
