"""Fast inference: the release's modulated-conv order, fp32 islands under autocast, the
engine's switches against its default path, automatic batch size, and the accuracy guard
(reduced precision against fp32 on real aligned faces)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.inference import speed
from fgnet_video.inference.agreement import REQUIRED_AGREEMENT, compare_predictions
from fgnet_video.inference.batch_size import AUTO_BATCH_CAP, fit_batch_size
from fgnet_video.inference.engine import InferenceEngine, Prediction, parse_batch_size
from fgnet_video.inference.precision import cpu_has_native_bf16
from fgnet_video.inference.speed import (
    FastSettings,
    bucket_size,
    keep_sensitive_fp32,
    prepare_model,
)
from fgnet_video.model.config import TINY
from fgnet_video.model.fgnet import decode_heatmaps
from fgnet_video.model.init import random_model
from fgnet_video.model.layers import EqualLinear
from fgnet_video.model.stylegan2 import ModulatedConv2d, set_modconv_order
from fgnet_video.weights.checkpoints import load_model

from .conftest import shared_path


def _faces(n: int, side: int = 256, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def _images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, TINY.image_size, TINY.image_size,
                      generator=torch.Generator().manual_seed(0)) * 2 - 1


def _real_aligned_faces(limit: int) -> np.ndarray:
    """Aligned 256x256 faces from ../shared/reference (the release's inputs first)."""
    forward = shared_path("reference", "fgnet_forward")
    align = shared_path("reference", "ffhq_align")
    paths = sorted(forward.glob("*.jpg")) + sorted(align.glob("*_aligned.png"))
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths[:limit]])


# -- the release's computation order --------------------------------------------------------

def test_release_modconv_order_agrees_with_the_default_to_fp32_rounding(monkeypatch):
    model = random_model(TINY, seed=0)
    assert not any(m.fused_modconv for m in model.modules() if isinstance(m, ModulatedConv2d))
    x = _images()
    groups_seen = []
    conv2d = F.conv2d

    def recording_conv2d(*args, **kwargs):
        groups_seen.append(kwargs.get("groups", 1))
        return conv2d(*args, **kwargs)

    with torch.no_grad():
        default = model.trace(x, rgb=True)
        set_modconv_order(model, True)
        monkeypatch.setattr(F, "conv2d", recording_conv2d)
        release = model.trace(x, rgb=True)
    assert len(x) in groups_seen  # the batch really was folded into the groups
    for ours, theirs in zip(default.features, release.features, strict=True):
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(release.image, default.image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(release.heatmaps, default.heatmaps, rtol=1e-5, atol=1e-6)


def test_release_modconv_order_upsamples_like_the_default():
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=8, upsample=True)
    x, w = torch.randn(3, 6, 7, 7), torch.randn(3, 8)
    with torch.no_grad():
        default = conv(x, w)
        conv.fused_modconv = True
        release = conv(x, w)
    assert release.shape == (3, 5, 14, 14)
    torch.testing.assert_close(release, default, rtol=1e-5, atol=1e-5)


# -- fp32 islands under autocast ------------------------------------------------------------

@pytest.mark.parametrize("enabled", [True, False])
def test_sensitive_parts_run_in_fp32_under_bf16_autocast(enabled, monkeypatch):
    model = random_model(TINY, seed=0)
    keep_sensitive_fp32(model, enabled)
    dtypes = {"linear": set(), "coefficients": set()}
    for module in model.modules():
        if isinstance(module, EqualLinear):
            module.register_forward_hook(lambda m, i, out: dtypes["linear"].add(out.dtype))
    coefficients = ModulatedConv2d.coefficients

    def recording(self, w):
        style, demod = coefficients(self, w)
        dtypes["coefficients"].update({style.dtype} | ({demod.dtype} if demod is not None
                                                        else set()))
        return style, demod

    monkeypatch.setattr(ModulatedConv2d, "coefficients", recording)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        heatmaps = model(_images(2))
    expected = {torch.float32} if enabled else {torch.bfloat16}
    assert dtypes == {"linear": expected, "coefficients": expected}
    assert heatmaps.dtype == torch.bfloat16  # the convolutions stay in bf16


# -- the engine's switches --------------------------------------------------------------------

def _direct_scores(model, faces: np.ndarray, n_aus: int) -> np.ndarray:
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    x = F.interpolate(x, size=(TINY.image_size,) * 2, mode="bilinear", antialias=True)
    with torch.no_grad():
        return decode_heatmaps(model(x), n_aus)[1].numpy()


def test_default_engine_on_cpu_is_the_plain_fp32_forward(tiny_weights):
    loaded = load_model(tiny_weights)
    engine = InferenceEngine(loaded, device="cpu")
    assert engine.dtype == torch.float32 and engine.batch_size == 16
    faces = _faces(5)
    expected = _direct_scores(random_model(TINY, seed=0), faces, engine.n_aus)
    np.testing.assert_array_equal(engine.predict(faces).scores, expected)


@pytest.mark.parametrize("switches", [
    {"channels_last": True},
    {"fp32_sensitive": False},
], ids=["channels_last", "no-fp32-islands"])
def test_switches_keep_fp32_results(tiny_weights, switches):
    switched = InferenceEngine(load_model(tiny_weights), device="cpu", batch_size=3, **switches)
    assert_fp32_results_of_the_default_engine(switched, tiny_weights)


def assert_fp32_results_of_the_default_engine(engine: InferenceEngine, weights) -> None:
    """`engine` gives the default engine's heatmaps and scores, to fp32 rounding."""
    faces = _faces(4)
    reference = InferenceEngine(load_model(weights), device="cpu", batch_size=3)
    a = reference.predict(faces, keep_heatmaps=True)
    b = engine.predict(faces, keep_heatmaps=True)
    np.testing.assert_allclose(b.heatmaps, a.heatmaps, atol=2e-5)
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-6)


def test_channels_last_reaches_the_encoder_and_interpreter(tiny_weights):
    engine = InferenceEngine(load_model(tiny_weights), device="cpu", channels_last=True)
    convs = {name: m for name, m in engine.model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs and all(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for name, m in convs.items() if m.kernel_size != (1, 1))


def _impls(model: torch.nn.Module) -> set:
    return {m.impl for m in model.modules() if hasattr(m, "impl")}


@contextlib.contextmanager
def environment_read_only() -> Iterator[None]:
    """Inside, writing or deleting an os.environ entry fails the test."""
    def refuse(*args):
        raise AssertionError("os.environ must not be written")

    with mock.patch.object(type(os.environ), "__setitem__", refuse), \
            mock.patch.object(type(os.environ), "__delitem__", refuse):
        yield


@pytest.mark.parametrize("switches, impl", [({}, None), ({"compile": True}, "ref"),
                                            ({"compile": True, "compile_ops": True}, None)])
def test_prepare_model_sets_the_ops_impl_without_touching_the_environment(
        tiny_weights, switches, impl):
    model = random_model(TINY, seed=0)
    assert _impls(model) == {None}
    with environment_read_only():
        assert _impls(prepare_model(model, FastSettings(**switches))) == {impl}
        # the engine owns the switch: preparing again for the default clears it
        assert _impls(prepare_model(model, FastSettings())) == {None}


def test_compile_ops_needs_compile():
    with pytest.raises(UserError, match="needs compile"):
        FastSettings(compile_ops=True).check(torch.device("cpu"))


def test_impossible_switches_are_user_errors(tiny_weights):
    loaded = load_model(tiny_weights)
    with pytest.raises(UserError, match="CUDA graphs need a CUDA device"):
        InferenceEngine(loaded, device="cpu", cuda_graphs=True)
    with pytest.raises(UserError, match="positive integer or 'auto'"):
        InferenceEngine(loaded, device="cpu", batch_size="many")


# -- batch sizes ------------------------------------------------------------------------------

def test_batch_size_parsing_and_auto_on_cpu(tiny_weights):
    assert parse_batch_size("auto") == "auto" and parse_batch_size(" 8 ") == 8
    assert parse_batch_size(3) == 3
    for bad in ("0", 0, "-2", "1.5"):
        with pytest.raises(UserError):
            parse_batch_size(bad)
    assert InferenceEngine(load_model(tiny_weights), device="cpu", batch_size="auto").batch_size \
        == 16


def test_fit_batch_size_uses_the_memory_estimate():
    gib = 2**30
    assert fit_batch_size(free_bytes=40 * gib, fixed=2 * gib, per_face=gib // 2) == 60
    assert fit_batch_size(free_bytes=400 * gib, fixed=0, per_face=gib // 2) == AUTO_BATCH_CAP
    assert fit_batch_size(free_bytes=gib, fixed=2 * gib, per_face=gib) == 1


def test_buckets_are_powers_of_two_up_to_the_batch_size():
    assert [bucket_size(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]
    assert bucket_size(12, 12) == 12 and bucket_size(20, 16) == 20


def test_cli_accepts_auto_batch_and_speed_switches(tiny_weights, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(_faces(1)[0]).save(path)
    out = tmp_path / "aus.csv"
    result = CliRunner().invoke(main, ["predict", "--aligned", "-w", str(tiny_weights), str(path),
                                       "-o", str(out), "--batch-size", "auto",
                                       "--channels-last", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 2
    result = CliRunner().invoke(main, ["predict", "--aligned", "-w", str(tiny_weights), str(path),
                                       "--batch-size", "lots"])
    assert result.exit_code != 0 and "positive integer or 'auto'" in result.output


# -- the accuracy guard -----------------------------------------------------------------------

def test_agreement_counts_only_confident_pairs():
    heatmaps = np.zeros((2, 3, 4, 4), np.float32)
    reference = Prediction(np.array([[0.5, -0.01, -0.3], [0.1, 0.2, -0.05]]), heatmaps)
    other = Prediction(np.array([[0.4, 0.01, -0.2], [-0.1, 0.2, -0.05]]), heatmaps + 0.25)
    agreement = compare_predictions(reference, other)
    assert agreement.pairs == 5 and agreement.decisions == pytest.approx(4 / 5)
    assert agreement.max_heatmap_diff == pytest.approx(0.25)
    assert agreement.max_score_diff == pytest.approx(0.2)
    assert not agreement.acceptable


def _guard(reference_converted, precision: str, device: str, n_faces: int):
    faces = _real_aligned_faces(n_faces)
    fp32 = InferenceEngine(load_model(reference_converted), device=device, precision="fp32")
    expected = fp32.predict(faces, keep_heatmaps=True)
    reduced = InferenceEngine(load_model(reference_converted), device=device,
                              precision=precision)
    agreement = compare_predictions(expected, reduced.predict(faces, keep_heatmaps=True))
    print(f"\n{precision} on {device} vs fp32, {len(faces)} faces: {agreement}")
    assert agreement.pairs >= 10 * len(faces)
    assert agreement.decisions >= REQUIRED_AGREEMENT, agreement
    assert agreement.max_heatmap_diff < 0.25, agreement
    return agreement


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 "
                    "or AMX): the full model in emulated bf16 takes over an hour")
def test_bf16_on_cpu_keeps_the_au_decisions_of_fp32(reference_converted):
    _guard(reference_converted, "bf16", "cpu", n_faces=3)


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cuda_keeps_the_au_decisions_of_fp32(reference_converted, precision):
    _guard(reference_converted, precision, "cuda", n_faces=5)


# -- CUDA only ----------------------------------------------------------------------------------

@pytest.mark.cuda
def test_cuda_graphs_replay_the_plain_forward(tiny_weights):
    faces = _faces(7)
    plain = InferenceEngine(load_model(tiny_weights), device="cuda", precision="fp32",
                            batch_size=4)
    graphed = InferenceEngine(load_model(tiny_weights), device="cuda", precision="fp32",
                              batch_size=4, cuda_graphs=True)
    a = plain.predict(faces, keep_heatmaps=True)
    for _ in range(2):  # captured (buckets 4 and 4 for the tail of 3), then replayed
        b = graphed.predict(faces, keep_heatmaps=True)
        np.testing.assert_allclose(b.heatmaps, a.heatmaps, atol=1e-5)


@pytest.mark.cuda
def test_auto_batch_size_on_cuda_fits_and_runs(tiny_weights):
    engine = InferenceEngine(load_model(tiny_weights), device="cuda", batch_size="auto")
    assert 1 <= engine.batch_size <= AUTO_BATCH_CAP
    prediction = engine.predict(_faces(engine.batch_size + 1))
    assert prediction.scores.shape == (engine.batch_size + 1, engine.n_aus)


@pytest.mark.cuda
def test_cuda_engine_matches_the_cpu_engine_in_fp32(tiny_weights):
    faces = _faces(5)
    cpu = InferenceEngine(load_model(tiny_weights), device="cpu", precision="fp32")
    cuda = InferenceEngine(load_model(tiny_weights), device="cuda", precision="fp32",
                           channels_last=True)
    a, b = cpu.predict(faces, keep_heatmaps=True), cuda.predict(faces, keep_heatmaps=True)
    np.testing.assert_allclose(b.heatmaps, a.heatmaps, atol=1e-3)  # TF32 convolutions


def test_compiled_runner_pads_to_buckets_and_matches_the_plain_forward(tiny_weights,
                                                                       monkeypatch):
    # dynamo's capture and the bucketing on a cheap backend: inductor's code generation takes
    # minutes on a CPU (the benchmark times it with --compile)
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "eager")
    faces = _faces(3)
    plain = InferenceEngine(load_model(tiny_weights), device="cpu", batch_size=4)
    compiled = InferenceEngine(load_model(tiny_weights), device="cpu", batch_size=4, compile=True)
    shapes, compiled_forward = [], compiled._runner._compiled

    def recording(x):
        shapes.append(len(x))
        return compiled_forward(x)

    monkeypatch.setattr(compiled._runner, "_compiled", recording)
    a = plain.predict(faces, keep_heatmaps=True)
    b = compiled.predict(faces, keep_heatmaps=True)
    assert shapes == [4]  # 3 faces padded to the bucket of 4
    np.testing.assert_allclose(b.heatmaps, a.heatmaps, atol=1e-5)


def test_non_finite_heatmaps_are_an_error_not_a_score(tiny_weights):
    engine = InferenceEngine(load_model(tiny_weights), device="cpu", batch_size=2)
    head = engine.model.interpreter.layer(TINY.n_levels - 1)[-1]
    head.bias.data[0] = float("inf")  # what an fp16 overflow leaves behind
    with pytest.raises(UserError, match="non-finite heatmaps"):
        engine.predict(_faces(3))


def test_cpu_batch_size_follows_the_available_memory():
    from fgnet_video.inference.batch_size import (
        AUTO_BATCH_CPU,
        FULL_CPU_FACE_BYTES,
        cpu_batch_size,
        cpu_face_bytes,
    )
    from fgnet_video.model.config import FULL, TINY

    assert cpu_face_bytes(FULL) == FULL_CPU_FACE_BYTES
    assert cpu_face_bytes(TINY) < FULL_CPU_FACE_BYTES / 100
    assert cpu_batch_size(FULL, available=64 * 2**30) == AUTO_BATCH_CPU
    # 8 GiB available: 80% of it holds 10 faces of 615 MiB
    assert cpu_batch_size(FULL, available=8 * 2**30) == 10
    assert cpu_batch_size(FULL, available=2**29) == 1  # never below one face
    assert cpu_batch_size(TINY, available=8 * 2**30) == AUTO_BATCH_CPU


def test_exact_fp32_turns_tf32_off_on_cuda_and_restores_the_switches():
    from fgnet_video.fp32 import exact_fp32, tf32_switches

    switches = tf32_switches()
    before = [getattr(owner, name) for owner, name, _ in switches]
    with pytest.raises(RuntimeError), exact_fp32(torch.device("cuda")):
        assert [getattr(owner, name) for owner, name, _ in switches] == \
            [value for _, _, value in switches]
        raise RuntimeError("the forward failed")
    assert [getattr(owner, name) for owner, name, _ in switches] == before
    with exact_fp32(torch.device("cpu")):  # nothing changes for the CPU
        assert [getattr(owner, name) for owner, name, _ in switches] == before


def test_exact_fp32_holds_until_the_last_thread_leaves():
    """The model's thread and the face networks' thread overlap: the switches stay IEEE
    while either is inside (a per-block save and restore would put TF32 back under the
    other), and are restored when both have left."""
    from fgnet_video.fp32 import exact_fp32, tf32_switches

    switches = tf32_switches()
    before = [getattr(owner, name) for owner, name, _ in switches]
    ieee = [value for _, _, value in switches]
    now = lambda: [getattr(owner, name) for owner, name, _ in switches]  # noqa: E731
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def second() -> None:
        first_in.wait()
        with exact_fp32(torch.device("cuda")):
            second_in.set()
            first_out.wait()
            seen["after the first left"] = now()

    thread = threading.Thread(target=second)
    thread.start()
    with exact_fp32(torch.device("cuda")):
        first_in.set()
        second_in.wait()
    first_out.set()
    thread.join()
    assert seen["after the first left"] == ieee
    assert now() == before
