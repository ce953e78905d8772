"""Speed switches of FG-Net inference, each independent so it can be measured on its own.

`FastSettings` holds the switches; `prepare_model` applies the ones that live on the model;
`ModelRunner` (wrapped by `wrap_runner` for graphs or compile) maps normalised faces on the
device to (clamped heatmaps, scores):

- fp32_sensitive: under autocast, the pSp style heads, the mapping MLP (with its PixelNorm)
  and every modulated conv's style s and demodulation d run in fp32 (about 0.1 GFLOP of the
  504 per face); the convolutions stay in reduced precision. This halves the largest score
  error of bf16 against fp32 (benchmarks/precision_islands.py; figures in RESULTS.md,
  measured on random reference weights). decode_heatmaps always clamps and averages in
  fp32.
- channels_last: the pSp encoder and the interpreter (plain convolutions) in NHWC memory
  format; the generator stays NCHW, its compiled ops work on contiguous NCHW planes.
- cuda_graphs: one CUDA graph per batch-size bucket (powers of two up to the batch size, the
  batch zero-padded to its bucket), replayed instead of launching ~1000 kernels per batch.
- compile: torch.compile (inductor) of the forward over the pure-PyTorch StyleGAN2 ops, which
  inductor fuses itself: `prepare_model` sets impl="ref" on the model's op modules; same
  buckets. With compile_ops as well, the op modules keep the user's default instead, so on
  CUDA the compiled kernels stay in the graph as the dispatcher-registered operators they
  are (their fake implementations give inductor the shapes), and inductor fuses what lies
  between them: the GPU check times both, so the faster exact-enough mode can become the
  default.
The release's own computation (per-sample weights with a grouped conv, the generator image
rendered too, the pure-PyTorch ops), the benchmarks' baseline, is not a switch here: it
lives with the benchmarks that use it (benchmarks/release_baseline.py).

Otherwise the op modules keep impl=None, the user's default ($FGNET_VIDEO_KERNELS, see
fgnet_video.kernels). Nothing here changes os.environ.

Helper for the device side: `to_device` (pinned, non-blocking host-to-GPU copy). The
automatic batch size is `fgnet_video.inference.batch_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fgnet_video.errors import UserError
from fgnet_video.kernels import set_kernel_impl
from fgnet_video.model.fgnet import FGNet, decode_heatmaps
from fgnet_video.model.layers import EqualLinear
from fgnet_video.model.stylegan2 import ModulatedConv2d, set_modconv_order

GRAPH_WARMUP_RUNS = 2
COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class FastSettings:
    """Inference switches (see the module docstring); the defaults are today's fast path."""

    channels_last: bool = False
    fp32_sensitive: bool = True
    cuda_graphs: bool = False
    compile: bool = False
    compile_ops: bool = False

    def check(self, device: torch.device) -> None:
        """UserError for combinations that cannot run on `device`."""
        if self.compile_ops and not self.compile:
            raise UserError("compile_ops keeps the compiled kernels under torch.compile: it "
                            "needs compile")
        if self.cuda_graphs and device.type != "cuda":
            raise UserError(f"CUDA graphs need a CUDA device, not {device}")
        if self.cuda_graphs and self.compile:
            raise UserError("choose one of CUDA graphs and torch.compile, not both")

    @property
    def kernel_impl(self) -> str | None:
        """The StyleGAN2 ops' implementation on the model: "ref" for torch.compile over the
        reference ops, else None (the user's default)."""
        return "ref" if self.compile and not self.compile_ops else None


def keep_sensitive_fp32(model: torch.nn.Module, enabled: bool) -> None:
    """Under autocast, compute every EqualLinear (pSp style heads, mapping MLP, modulation)
    and the demodulation coefficients in fp32 (True), or in the autocast dtype (False)."""
    for module in model.modules():
        if isinstance(module, EqualLinear):
            module.fp32_under_autocast = enabled
        elif isinstance(module, ModulatedConv2d):
            module.fp32_coefficients = enabled


def prepare_model(model: FGNet, settings: FastSettings) -> FGNet:
    """Apply the switches that live on the model (in place), the ops' implementation
    (`settings.kernel_impl`) and the activation-modulation order of the modulated convs
    included; returns the model."""
    set_modconv_order(model.g_all, False)
    set_kernel_impl(model, settings.kernel_impl)
    keep_sensitive_fp32(model, settings.fp32_sensitive)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model.pspencoder.to(memory_format=memory_format)
    model.interpreter.to(memory_format=memory_format)
    return model


Output = tuple[torch.Tensor, torch.Tensor]


class ModelRunner:
    """Normalised faces (B, 3, S, S) on the model's device -> (clamped heatmaps of the first
    `n_aus` channels, scores), in `dtype` autocast with the settings' switches. A face whose
    raw heatmaps hold a non-finite value (an fp16 overflow) gets NaN scores, so the clamp
    cannot pass it off as a valid answer. `render_rgb` also renders the generator's image,
    which FG-Net never reads (the release did: benchmarks/release_baseline.py)."""

    render_rgb = False

    def __init__(self, model: FGNet, settings: FastSettings, dtype: torch.dtype, n_aus: int):
        self.model, self.settings, self.dtype, self.n_aus = model, settings, dtype, n_aus

    def reset(self, max_batch: int) -> None:
        """Nothing is held between calls."""

    def forward(self, x: torch.Tensor) -> Output:
        """The forward pass (what torch.compile traces)."""
        if self.settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # cache_enabled=False: each weight is cast once per pass anyway, and graph capture
        # must not keep casts made outside the graph
        with torch.autocast(x.device.type, dtype=self.dtype, cache_enabled=False,
                            enabled=self.dtype != torch.float32):
            trace = self.model.trace(x, rgb=self.render_rgb)
        heatmaps, scores = decode_heatmaps(trace.heatmaps, self.n_aus)
        finite = torch.isfinite(trace.heatmaps[:, :self.n_aus]).flatten(1).all(dim=1)
        return heatmaps, scores.masked_fill(~finite[:, None], float("nan"))

    __call__ = forward


def bucket_size(n: int, max_batch: int) -> int:
    """The padded batch a runner with buckets uses for n faces: the next power of two,
    at most max(n, max_batch)."""
    return min(1 << (n - 1).bit_length(), max(n, max_batch))


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    if len(x) == size:
        return x
    return torch.cat([x, x.new_zeros((size - len(x), *x.shape[1:]))])


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    outputs: Output


@dataclass
class GraphedRunner:
    """Replays a CUDA graph of `runner` captured once per (bucket, input shape); all graphs
    share one memory pool (they are replayed one after another on one stream)."""

    runner: ModelRunner
    max_batch: int
    _graphs: dict[tuple, _Graph] = field(default_factory=dict)
    _pool: tuple | None = None

    def __call__(self, x: torch.Tensor) -> Output:
        n = len(x)
        key = (bucket_size(n, self.max_batch), *x.shape[1:], x.dtype, x.device)
        entry = self._graphs.get(key) or self._capture(key, x)
        entry.static_input[:n].copy_(x)
        entry.graph.replay()
        return tuple(t[:n].clone() for t in entry.outputs)

    def _capture(self, key: tuple, x: torch.Tensor) -> _Graph:
        static_input = x.new_zeros((key[0], *x.shape[1:]))
        # warm up on a side stream (lazy plugin build, cuDNN/cuBLAS handles), as capture needs
        side, main = torch.cuda.Stream(x.device), torch.cuda.current_stream(x.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_RUNS):
                self.runner(static_input)
        main.wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self.runner(static_input)
        self._graphs[key] = _Graph(graph, static_input, outputs)
        return self._graphs[key]

    def reset(self, max_batch: int) -> None:
        """Drop every captured graph and its memory (after an out-of-memory error)."""
        self._graphs.clear()
        self._pool = None
        self.max_batch = max_batch


class CompiledRunner:
    """torch.compile of the runner's forward on padded buckets (one compilation per bucket
    instead of one per batch size); the model runs the pure-PyTorch ops (impl="ref", set by
    prepare_model for settings with compile)."""

    def __init__(self, runner: ModelRunner, max_batch: int):
        self.runner, self.max_batch = runner, max_batch
        self._compiled = torch.compile(runner.forward, dynamic=False, backend=COMPILE_BACKEND)

    def __call__(self, x: torch.Tensor) -> Output:
        n = len(x)
        heatmaps, scores = self._compiled(_pad(x, bucket_size(n, self.max_batch)))
        return heatmaps[:n], scores[:n]

    def reset(self, max_batch: int) -> None:
        """Use buckets up to `max_batch` from now on (compiled code is kept)."""
        self.max_batch = max_batch


def wrap_runner(runner: ModelRunner, max_batch: int) -> Runner:
    """The runner its settings ask for: CUDA-graphed, compiled, or `runner` itself."""
    if runner.settings.cuda_graphs:
        return GraphedRunner(runner, max_batch)
    if runner.settings.compile:
        return CompiledRunner(runner, max_batch)
    return runner


Runner = ModelRunner | GraphedRunner | CompiledRunner


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`; to a GPU through page-locked memory without blocking the
    host (the caching host allocator keeps the staging buffer until the copy is done)."""
    if device.type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


