"""The benchmarks' release baseline (benchmarks/release_baseline.py) computes what the
default engine computes, the release's way."""

from __future__ import annotations

import sys

import pytest

from fgnet_video.inference.engine import InferenceEngine
from fgnet_video.model.stylegan2 import ModulatedConv2d
from fgnet_video.weights.checkpoints import load_model

from .conftest import REPO
from .test_fast_inference import _impls, assert_fp32_results_of_the_default_engine

sys.path.insert(0, str(REPO / "benchmarks"))
from release_baseline import ReleaseEngine, engine_for  # noqa: E402


@pytest.mark.parametrize("parts", [
    {"fused_modconv": True},
    {"fused_modconv": True, "render_rgb": True, "reference_ops": True},
], ids=["grouped", "release"])
def test_the_release_computation_keeps_the_fp32_results(tiny_weights, parts):
    release = ReleaseEngine(load_model(tiny_weights), device="cpu", batch_size=3, **parts)
    assert_fp32_results_of_the_default_engine(release, tiny_weights)


def test_each_release_part_reaches_the_model(tiny_weights):
    release = engine_for(load_model(tiny_weights), {"fused_modconv": True, "render_rgb": True,
                                                    "reference_ops": True}, device="cpu")
    assert isinstance(release, ReleaseEngine) and release._plain.render_rgb
    assert _impls(release.model) == {"ref"}
    assert all(m.fused_modconv for m in release.model.modules()
               if isinstance(m, ModulatedConv2d))
    plain = engine_for(load_model(tiny_weights), {"channels_last": True}, device="cpu")
    assert type(plain) is InferenceEngine and not plain._plain.render_rgb
    assert _impls(plain.model) == {None}
    assert not any(m.fused_modconv for m in plain.model.modules()
                   if isinstance(m, ModulatedConv2d))
