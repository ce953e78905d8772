"""InferenceEngine: batching, precision choice, out-of-memory recovery."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from fgnet_video.errors import UserError
from fgnet_video.inference import precision
from fgnet_video.inference.engine import InferenceEngine, images_to_tensor
from fgnet_video.inference.precision import SlowPrecisionWarning, cpu_flags, resolve_precision
from fgnet_video.weights.checkpoints import load_model


def _faces(n: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)


def test_images_are_scaled_like_the_release():
    image = np.zeros((1, 64, 64, 3), np.uint8)
    image[0, 0, 0] = (0, 255, 51)
    x = images_to_tensor(image, 64)
    assert x.shape == (1, 3, 64, 64)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1]))
    assert images_to_tensor(_faces(2), 64).shape == (2, 3, 64, 64)
    with pytest.raises(UserError):
        images_to_tensor(np.zeros((2, 8, 8), np.uint8), 64)


def test_precision_choice_on_cpu(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == torch.float32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(SlowPrecisionWarning, match="no native bf16"):
        assert resolve_precision("bf16", cpu) == torch.bfloat16
    with pytest.raises(UserError, match="fp16"):
        resolve_precision("fp16", cpu)
    with pytest.raises(UserError, match="unknown precision"):
        resolve_precision("fp8", cpu)


@pytest.mark.parametrize("cpuinfo, native", [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_tile amx_bf16\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n", False),  # emulated
    ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n", True),  # Arm
    ("processor\t: 0\nFeatures\t: fp asimd\n", False),
])
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert bool(cpu_flags(cpuinfo) & precision.NATIVE_BF16_FLAGS) == native


def test_out_of_memory_halves_the_batch_and_keeps_every_face(tiny_weights, monkeypatch):
    engine = InferenceEngine(load_model(tiny_weights), device="cpu", batch_size=8)
    expected = engine.predict(_faces(5)).scores
    real_run, sizes = engine._run, []

    def limited(x):
        sizes.append(len(x))
        if len(x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_run(x)

    monkeypatch.setattr(engine, "_run", limited)
    scores = engine.predict(_faces(5)).scores
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert engine.batch_size == 2 and sizes == [5, 4, 2, 2, 1]

    monkeypatch.setattr(engine, "_run", lambda x: (_ for _ in ()).throw(
        torch.OutOfMemoryError("simulated")))
    with pytest.raises(UserError, match="even with one face"):
        engine.predict(_faces(1))


def test_bf16_on_cpu_stays_close_to_fp32(tiny_weights):
    faces = _faces(3)
    fp32 = InferenceEngine(load_model(tiny_weights), device="cpu", precision="fp32")
    bf16 = InferenceEngine(load_model(tiny_weights), device="cpu", precision="bf16")
    a, b = fp32.predict(faces, keep_heatmaps=True), bf16.predict(faces, keep_heatmaps=True)
    assert np.abs(a.heatmaps - b.heatmaps).max() < 0.05
