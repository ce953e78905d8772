"""FG-Net inference speed: the release's computation against each optimisation switched on in
turn, in faces/s, with FLOPs, the share of the device's bf16 matmul rate, and an accuracy
column against fp32 on real aligned faces.

    python benchmarks/model_speed.py                                  # CUDA: full, 1,16,64
    python benchmarks/model_speed.py --device cpu --preset tiny
    python benchmarks/model_speed.py --device cpu --preset full --batches 1 --accuracy-faces 3
    python benchmarks/model_speed.py --weights bp4d.safetensors       # trained weights

Modes (each row adds one switch to the row above it; an indented row replaces the one above):

    release            fp32, pure-PyTorch ops (impl "ref"), RGB image computed, per-sample
                       weights with a grouped conv (the release's order): the baseline
    + compiled ops     from here on the StyleGAN2 ops' default impl (FGNET_VIDEO_KERNELS;
                       unset: "auto", the compiled kernels on CUDA); CUDA only
    + no RGB           the generator image is not computed (FG-Net never reads it)
    + activation order the modulated convs scale activations, one ungrouped conv per layer
    + channels-last    NHWC for the pSp encoder and the interpreter
    + bf16             autocast, styles / mapping MLP / demodulation kept in fp32
      bf16, no islands the same with everything under autocast
      fp16             fp16 autocast instead of bf16 (CUDA only)
    + CUDA graphs      one graph per batch-size bucket (CUDA only)
      torch.compile    inductor over the reference ops instead of the graphs (CUDA; on the
                       CPU with --compile)
      compile + ops    inductor with the compiled kernels kept as dispatcher-registered
                       operators (CUDA only)

faces/s is the median over --repeats calls of InferenceEngine.predict on a batch (host
uint8 in, scores out, transfers included), after one warm-up call (kernel build, graph
capture, compilation). An out-of-memory error halves the batch: the batch actually used is
shown with a '*'. GFLOP/face is counted with torch.utils.flop_counter (2 per multiply-add,
convolutions and matmuls only). The accuracy columns compare each mode with the release
mode (fp32) on real aligned faces: AU decisions agreeing on (face, AU) pairs whose fp32
|score| > 0.02, and the largest heatmap difference. Random weights unless --weights.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from release_baseline import engine_for  # noqa: E402 - benchmarks/ is this script's folder
from torch.utils.flop_counter import FlopCounterMode

from fgnet_video.aus import BP4D_AUS
from fgnet_video.errors import UserError
from fgnet_video.inference import speed as speed_switches
from fgnet_video.inference.agreement import compare_predictions
from fgnet_video.inference.devices import resolve_device
from fgnet_video.inference.engine import InferenceEngine
from fgnet_video.inference.precision import cpu_has_native_bf16
from fgnet_video.kernels import IMPL_ENV, default_impl
from fgnet_video.model.config import FGNetConfig, preset
from fgnet_video.model.fgnet import FGNet
from fgnet_video.model.init import random_model
from fgnet_video.model.stylegan2 import set_modconv_order
from fgnet_video.weights.checkpoints import load_model
from fgnet_video.weights.loaded import LoadedModel

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RELEASE = {"fused_modconv": True, "render_rgb": True, "reference_ops": True}


@dataclass(frozen=True)
class Mode:
    name: str
    precision: str
    switches: dict = field(default_factory=dict)
    needs_cuda: bool = False


MODES = [
    Mode("release (fp32, ref ops, RGB, grouped)", "fp32", RELEASE),
    Mode("+ compiled ops", "fp32", {"fused_modconv": True, "render_rgb": True}, True),
    Mode("+ no RGB", "fp32", {"fused_modconv": True}),
    Mode("+ activation-modulation order", "fp32", {}),
    Mode("+ channels-last", "fp32", {"channels_last": True}),
    Mode("+ bf16 (fp32 islands)", "bf16", {"channels_last": True}),
    Mode("  bf16, no fp32 islands", "bf16", {"channels_last": True, "fp32_sensitive": False}),
    Mode("  fp16 (fp32 islands)", "fp16", {"channels_last": True}, True),
    Mode("+ CUDA graphs", "auto", {"channels_last": True, "cuda_graphs": True}, True),
    Mode("  torch.compile", "auto", {"channels_last": True, "compile": True}),
    Mode("  torch.compile over compiled ops", "auto",
         {"channels_last": True, "compile": True, "compile_ops": True}, True),
]


@dataclass
class Row:
    mode: Mode
    speeds: dict[int, tuple[float, int]] = field(default_factory=dict)  # batch -> (f/s, used)
    skipped: str | None = None
    agreement: object | None = None  # Agreement, or "reference" for the first row


# -- measurements -----------------------------------------------------------------------------

def device_line(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"torch {torch.__version__}, CPU {cpu} ({torch.get_num_threads()} threads)"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        text += (f", GPU {props.name} ({props.total_memory / 2**30:.0f} GiB, CUDA "
                 f"{torch.version.cuda})")
    return text


def gflops_per_face(config: FGNetConfig, release: bool) -> float:
    """Convolution + matmul GFLOP of one face, counted on a meta-device model."""
    with torch.device("meta"):
        model = FGNet(config).eval().requires_grad_(False)
        x = torch.zeros(1, 3, config.image_size, config.image_size)
    set_modconv_order(model, release)
    counter = FlopCounterMode(display=False)
    with counter:
        model.trace(x, rgb=release)
    return counter.get_total_flops() / 1e9


def matmul_tflops(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> float:
    """Achieved rate of a large square matmul (the device's practical peak)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    runs = 20 if device.type == "cuda" else 3
    torch.matmul(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(runs):
        torch.matmul(a, b)
    _sync(device)
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def faces_per_second(engine: InferenceEngine, faces: np.ndarray, repeats: int
                     ) -> tuple[float, int]:
    """(median faces/s over `repeats` calls after a warm-up, batch size in use after them)."""
    engine.predict(faces)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.predict(faces)
        times.append(time.perf_counter() - start)
    return len(faces) / statistics.median(times), engine.batch_size


# -- inputs -----------------------------------------------------------------------------------

def real_faces(limit: int) -> np.ndarray:
    """Up to `limit` real 256x256 aligned faces: the release's inputs, the FFHQ-alignment
    references, then (where dlib is installed) faces aligned by FacePipeline from the videos
    in ../shared/media."""
    from PIL import Image

    reference = SHARED / "reference"
    paths = (sorted((reference / "fgnet_forward").glob("*.jpg"))
             + sorted((reference / "ffhq_align").glob("*_aligned.png")))
    faces = [np.asarray(Image.open(p).convert("RGB").resize((256, 256))) for p in paths]
    if len(faces) < limit:
        try:
            faces += _video_faces(limit - len(faces))
        except UserError as exc:  # no dlib: the reference faces alone
            print(f"accuracy faces: no faces from video ({exc})", file=sys.stderr)
    return np.stack(faces[:limit]) if faces else np.zeros((0, 256, 256, 3), np.uint8)


def _video_faces(limit: int, every: int = 15) -> list[np.ndarray]:
    from fgnet_video.face.pipeline import FacePipeline
    from fgnet_video.media.video import VideoReader

    faces: list[np.ndarray] = []
    videos = sorted(p for p in (SHARED / "media").glob("*") if p.suffix in (".mp4", ".avi"))
    for i, video in enumerate(videos):
        share = (limit - len(faces)) // (len(videos) - i)
        pipeline = FacePipeline()
        with VideoReader(video) as reader:
            for frame in reader:
                if len(faces) >= limit or share <= 0:
                    break
                found = pipeline.process(frame)
                if frame.index % every == 0 and found:
                    faces.append(found[0].aligned)
                    share -= 1
    return faces


# -- the table --------------------------------------------------------------------------------

def run_modes(loaded: LoadedModel, device: torch.device, modes: list[Mode], batches: list[int],
              repeats: int, accuracy_faces: np.ndarray, with_compile: bool) -> list[Row]:
    size = loaded.model.config.image_size
    timing_faces = np.random.default_rng(0).integers(0, 256, (max(batches), size, size, 3),
                                                     dtype=np.uint8)
    rows, reference = [], None
    for mode in modes:
        row = Row(mode)
        rows.append(row)
        row.skipped = _skip_reason(mode, device, with_compile)
        if row.skipped:
            print(f"{mode.name}: skipped ({row.skipped})", file=sys.stderr, flush=True)
            continue
        for batch in batches:
            engine = engine_for(loaded, mode.switches, device=str(device),
                                precision=mode.precision, batch_size=batch)
            row.speeds[batch] = faces_per_second(engine, timing_faces[:batch], repeats)
            print(f"{mode.name}: batch {batch}: {row.speeds[batch][0]:.2f} faces/s",
                  file=sys.stderr, flush=True)
            del engine
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if len(accuracy_faces):
            engine = engine_for(loaded, mode.switches, device=str(device),
                                precision=mode.precision, batch_size=min(len(accuracy_faces), 16))
            prediction = engine.predict(accuracy_faces, keep_heatmaps=True)
            if reference is None:
                reference, row.agreement = prediction, "reference"
            else:
                row.agreement = compare_predictions(reference, prediction)
    return rows


def _skip_reason(mode: Mode, device: torch.device, with_compile: bool) -> str | None:
    if mode.needs_cuda and device.type != "cuda":
        return "needs CUDA"
    if mode.switches.get("compile") and device.type != "cuda" and not with_compile:
        return "add --compile to time torch.compile on the CPU"
    if mode.precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return "this CPU has no native bf16: emulated, it takes minutes and says nothing"
    return None


def format_table(rows: list[Row], batches: list[int]) -> str:
    head = (["mode", "precision"] + [f"faces/s b={b}" for b in batches]
            + [f"x release b={batches[-1]}", "AU agree (pairs)", "max |d heatmap|"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = rows[0].speeds.get(batches[-1])
    for row in rows:
        cells = [row.mode.name.strip() if not row.mode.name.startswith("  ")
                 else "&nbsp;&nbsp;" + row.mode.name.strip(), row.mode.precision]
        if row.skipped:
            lines.append("| " + " | ".join(cells + [f"skipped: {row.skipped}"]
                                          + [""] * (len(head) - 3)) + " |")
            continue
        for batch in batches:
            speed, used = row.speeds[batch]
            cells.append(f"{speed:.3g}" + (f" ({used}*)" if used != batch else ""))
        last = row.speeds[batches[-1]][0]
        cells.append(f"{last / base[0]:.2f}x" if base else "")
        cells += _accuracy_cells(row.agreement)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _accuracy_cells(agreement) -> list[str]:
    if agreement is None:
        return ["", ""]
    if agreement == "reference":
        return ["reference", "reference"]
    share = "n/a" if not agreement.pairs else f"{100 * agreement.decisions:.2f}%"
    return [f"{share} ({agreement.pairs})", f"{agreement.max_heatmap_diff:.2g}"]


def best_row(rows: list[Row]) -> tuple[Row, int, float] | None:
    measured = [(row, b, s) for row in rows for b, (s, _) in row.speeds.items()]
    return max(measured, key=lambda item: item[2]) if measured else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--preset", choices=["full", "tiny"], default=None,
                        help="model size (default: full on CUDA, tiny on the CPU)")
    parser.add_argument("--batches", default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument("--weights", default=None,
                        help="converted .safetensors to load (default: random weights)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per measurement (default 5 on CUDA, 2 on the CPU)")
    parser.add_argument("--accuracy-faces", type=int, default=8,
                        help="real faces for the accuracy columns (0: skip them)")
    parser.add_argument("--modes", default=None,
                        help="comma-separated row numbers to run, 1-based (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 gives steadier "
                             "figures on a machine shared with other jobs")
    parser.add_argument("--compile-backend", default=None, metavar="NAME",
                        help="torch.compile backend instead of inductor (eager: the plumbing "
                             "alone, in seconds; what the GPU check's dry run uses)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile on the CPU (minutes of compilation)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.compile_backend:
        speed_switches.COMPILE_BACKEND = args.compile_backend
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = preset(args.preset or ("full" if device.type == "cuda" else "tiny"))
    batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    repeats = args.repeats or (5 if device.type == "cuda" else 2)
    modes = MODES if not args.modes else [MODES[int(i) - 1] for i in args.modes.split(",")]
    if modes[0] is not MODES[0]:
        modes = [MODES[0], *modes]  # the baseline of the ratios and of the accuracy columns
    if args.weights:
        loaded = load_model(args.weights)
        config = loaded.model.config
        source = Path(args.weights).name
    else:
        loaded = LoadedModel(random_model(config, seed=0), "bp4d", BP4D_AUS)
        source = "random weights (seed 0)"
    faces = real_faces(args.accuracy_faces) if args.accuracy_faces > 0 else np.zeros((0,))

    print(f"device: {device} | {device_line(device)}")
    print(f"model: {'full' if config.resolution == 1024 else 'tiny'} preset "
          f"(image {config.image_size}, generator {config.resolution}), {source}")
    print(f"accuracy faces: {len(faces)} real aligned faces; timing: median of {repeats} calls")
    print(f"kernels: default impl {default_impl()} ({IMPL_ENV}); release rows use ref")
    release_gflop, fast_gflop = gflops_per_face(config, True), gflops_per_face(config, False)
    peak = matmul_tflops(device) if device.type == "cuda" or cpu_has_native_bf16() else None
    rows = run_modes(loaded, device, modes, batches, repeats, faces, args.compile)
    print()
    print(format_table(rows, batches))
    print()
    print(f"GFLOP per face: {release_gflop:.4g} (release: all styles, RGB image), "
          f"{fast_gflop:.4g} (features only)")
    if peak is None:
        print("bf16 matmul: skipped (this CPU has no native bf16: the probe alone would take "
              "minutes)")
    else:
        print(f"bf16 matmul: {peak:.2f} TFLOP/s measured in this command")
    best = best_row(rows)
    if best:
        row, batch, speed = best
        achieved = speed * fast_gflop / 1e3
        share = "" if peak is None else (
            f" = {100 * achieved / peak:.1f}% of the bf16 matmul rate (the fastest row, of "
            "whatever precision, against a bf16 matmul)")
        print(f"best: {row.mode.name.strip()} at batch {batch}: {speed:.3g} faces/s = "
              f"{achieved:.3g} TFLOP/s{share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
