"""Batched FG-Net inference on aligned faces: uint8 RGB images in, AU scores (and heatmaps) out.

The speed switches (channels-last, CUDA graphs, torch.compile, fp32 for the sensitive parts
under autocast, the release's computation order) live in `fgnet_video.inference.speed`; the engine
takes them as keyword options. On CUDA, faces travel to the GPU as uint8 through pinned
memory and are normalised there, and a batch's results come back while the next one runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fgnet_video.errors import UserError
from fgnet_video.fp32 import exact_fp32
from fgnet_video.inference.batch_size import auto_batch_size
from fgnet_video.inference.devices import current_device, resolve_device
from fgnet_video.inference.precision import precision_name, resolve_precision
from fgnet_video.inference.speed import (
    FastSettings,
    ModelRunner,
    prepare_model,
    to_device,
    wrap_runner,
)
from fgnet_video.model.fgnet import FGNet
from fgnet_video.options import ModelOptions, parse_batch_size
from fgnet_video.weights.loaded import LoadedModel

log = logging.getLogger(__name__)

def images_to_uint8(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 RGB faces (N, H, W, 3) as one CPU tensor (checked)."""
    array = images if isinstance(images, np.ndarray) else np.stack(images)
    batch = torch.from_numpy(np.ascontiguousarray(array))
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != torch.uint8:
        raise UserError(f"expected uint8 RGB images (N, H, W, 3), got {tuple(batch.shape)}")
    return batch


def normalise_faces(batch: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) on any device -> float (N, 3, size, size) in [-1, 1] as
    x / 255 * 2 - 1 (the release's normalisation); other sides are resized (bilinear,
    antialiased)."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0).mul_(2.0).sub_(1.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x


def images_to_tensor(images: np.ndarray | Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 RGB faces (N, H, W, 3) -> float (N, 3, size, size) in [-1, 1] on the CPU."""
    return normalise_faces(images_to_uint8(images), size)


@dataclass
class Prediction:
    """Per-face AU scores (N, n_aus) (heatmap means in [-1, 1]) and, if kept, the clamped
    heatmaps (N, n_aus, H, H). An AU is active iff its score > 0."""

    scores: np.ndarray
    heatmaps: np.ndarray | None = None

    @property
    def active(self) -> np.ndarray:
        return (self.scores > 0).astype(np.uint8)


@dataclass(frozen=True)
class EngineFacts:
    """What scored a recording's faces (`describe()` of a scorer): the checkpoint (path,
    sha256, sources, dataset, AU set, feature groups) and the run (device, dtype, batch
    size). The run record (`fgnet_video.analysis.sidecar`) is written from it."""

    checkpoint_path: str | None
    sha256: str
    sources: dict
    dataset: str
    aus: tuple[int, ...]
    features: tuple[str, ...]
    device: str
    dtype: torch.dtype
    batch_size: int


@dataclass
class _Fetch:
    """A batch's results on their way to the host; `ready` is None once they are there."""

    heatmaps: torch.Tensor | None
    scores: torch.Tensor
    ready: torch.cuda.Event | None

    def wait(self) -> tuple[np.ndarray | None, np.ndarray]:
        if self.ready is not None:
            self.ready.synchronize()
        return (None if self.heatmaps is None else self.heatmaps.numpy()), self.scores.numpy()


class InferenceEngine:
    """Runs a loaded FG-Net on batches of aligned faces on one device and precision.

    batch_size: faces per forward pass, or 'auto': on CUDA the largest batch (at most 64)
    whose measured memory need fits in 80% of the free memory; on the CPU at most 16, as
    many as fit in 80% of the available memory (`batch_size.cpu_batch_size`). An
    out-of-memory error halves it in any case.
    Speed switches (keyword only; see fgnet_video.inference.speed): channels_last,
    cuda_graphs, compile, compile_ops (torch.compile over the compiled kernels rather than
    the reference ops), fp32_sensitive (under bf16/fp16 autocast, keep styles, mapping MLP
    and demodulation in fp32; on by default). The engine owns its model's switches;
    `_prepare` and `_model_runner` are where a subclass changes the computation (the
    benchmarks' release baseline does).
    """

    def __init__(self, loaded: LoadedModel, device: str = ModelOptions.device,
                 precision: str = ModelOptions.precision,
                 batch_size: int | str = ModelOptions.batch_size, *,
                 channels_last: bool = ModelOptions.channels_last,
                 cuda_graphs: bool = ModelOptions.cuda_graphs,
                 compile: bool = ModelOptions.compile, fp32_sensitive: bool = True,
                 compile_ops: bool = False):
        requested_batch = parse_batch_size(batch_size)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.settings = FastSettings(channels_last=channels_last, fp32_sensitive=fp32_sensitive,
                                     cuda_graphs=cuda_graphs, compile=compile,
                                     compile_ops=compile_ops)
        self.settings.check(self.device)
        self.loaded = loaded
        self.n_aus = len(loaded.aus)
        with current_device(self.device):
            self.model = self._prepare(loaded.model.to(self.device).eval())
            self._plain = self._model_runner()
            self.batch_size = (self._auto_batch_size() if requested_batch == "auto"
                               else requested_batch)
            self._runner = wrap_runner(self._plain, self.batch_size)

    @classmethod
    def from_weights(cls, weights: str = ModelOptions.weights, psp: str | None = None,
                     dataset: str | None = None, features: str | None = None,
                     offline: bool | None = None, **engine_options) -> InferenceEngine:
        """Resolve and load a `--weights` value (`fgnet_video.weights.store.load_weights`: a file,
        or a known name through the cache), then build the engine with `engine_options` (this
        class's keyword options; `ModelOptions.engine_kwargs()` gives them all)."""
        from fgnet_video.weights.store import load_weights

        loaded = load_weights(weights, psp=psp, dataset=dataset, features=features,
                              offline=offline)
        return cls(loaded, **engine_options)

    def _prepare(self, model: FGNet) -> FGNet:
        """The model with this engine's switches applied (in place)."""
        return prepare_model(model, self.settings)

    def _model_runner(self) -> ModelRunner:
        """What maps normalised faces on the device to (heatmaps, scores)."""
        return ModelRunner(self.model, self.settings, self.dtype, self.n_aus)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def aus(self) -> tuple[int, ...]:
        """The AUs the loaded checkpoint scores, in score column order."""
        return self.loaded.aus

    def describe(self) -> EngineFacts:
        """What scored the faces: the checkpoint's identity and how it ran."""
        loaded = self.loaded
        return EngineFacts(
            checkpoint_path=loaded.metadata.get("path"), sha256=loaded.checkpoint_sha256(),
            sources=loaded.metadata.get("sources", {}), dataset=loaded.dataset,
            aus=tuple(loaded.aus), features=tuple(self.model.config.features),
            device=str(self.device), dtype=self.dtype, batch_size=self.batch_size)

    def _auto_batch_size(self) -> int:
        """`--batch-size auto` for this model on this device (`batch_size.auto_batch_size`),
        probing with forward passes of blank faces."""
        size = self.image_size

        @torch.inference_mode()
        def run(n: int) -> None:
            faces = torch.zeros((n, size, size, 3), dtype=torch.uint8, device=self.device)
            with exact_fp32(self.device):
                self._plain(normalise_faces(faces, size))

        return auto_batch_size(self.device, self.model.config, run)

    @torch.inference_mode()
    def _run(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(clamped heatmaps, scores) on the device for a uint8 (N, H, W, 3) CPU batch."""
        x = normalise_faces(to_device(batch, self.device), self.image_size)
        with exact_fp32(self.device):
            return self._runner(x)

    def _fetch(self, heatmaps: torch.Tensor, scores: torch.Tensor, keep_heatmaps: bool) -> _Fetch:
        """Start copying results to the host (asynchronously into pinned memory on CUDA)."""
        if self.device.type != "cuda":
            return _Fetch(heatmaps.cpu() if keep_heatmaps else None, scores.cpu(), None)

        def host(t: torch.Tensor) -> torch.Tensor:
            return torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(
                t, non_blocking=True)

        ready = torch.cuda.Event()
        fetch = _Fetch(host(heatmaps) if keep_heatmaps else None, host(scores), ready)
        ready.record()
        return fetch

    def predict(self, images: np.ndarray | Sequence[np.ndarray],
                keep_heatmaps: bool = False) -> Prediction:
        """AU scores for uint8 RGB aligned faces (N, H, W, 3), in batches of `batch_size`.

        A device out-of-memory error halves the batch size (for this and later calls) and
        retries, down to one face per batch.
        """
        with current_device(self.device):
            return self._predict(images, keep_heatmaps)

    def _predict(self, images: np.ndarray | Sequence[np.ndarray],
                 keep_heatmaps: bool) -> Prediction:
        scores, maps = [], []
        pending: _Fetch | None = None

        def collect(fetch: _Fetch) -> None:
            batch_maps, batch_scores = fetch.wait()
            if np.isnan(batch_scores).any():
                raise self._non_finite_error()
            scores.append(batch_scores)
            if keep_heatmaps:
                maps.append(batch_maps)

        start = 0
        while start < len(images):
            batch = images_to_uint8(images[start:start + self.batch_size])
            try:
                heatmaps, batch_scores = self._run(batch)
            except torch.OutOfMemoryError:
                self._shrink_batch()
                continue
            fetch = self._fetch(heatmaps, batch_scores, keep_heatmaps)
            if pending is not None:  # the previous batch arrives while this one runs
                collect(pending)
            pending = fetch
            start += len(batch)
        if pending is not None:
            collect(pending)
        n_aus = self.n_aus
        return Prediction(
            np.concatenate(scores) if scores else np.zeros((0, n_aus), np.float32),
            (np.concatenate(maps) if maps else None) if keep_heatmaps else None,
        )

    def _non_finite_error(self) -> UserError:
        """What to do about non-finite heatmaps: in fp32 the checkpoint's weights are at fault
        (the file may be damaged), in bf16/fp16 their range (fp32, or bf16 for fp16)."""
        problem = (f"the model produced non-finite heatmaps in {precision_name(self.dtype)} on "
                   f"{self.device}")
        if self.dtype == torch.float32:
            source = self.loaded.metadata.get("path", "the checkpoint")
            return UserError(f"{problem}: the weights of {source} produce non-finite values "
                             "(the file may be damaged)")
        other = "fp32" if self.dtype == torch.bfloat16 else "fp32 or bf16"
        return UserError(f"{problem}: use --precision {other}")

    def _shrink_batch(self) -> None:
        if self.batch_size == 1:
            raise UserError(f"out of memory on {self.device} even with one face per batch")
        self.batch_size //= 2
        self._runner.reset(self.batch_size)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        log.warning("out of memory on %s: batch size halved to %d", self.device, self.batch_size)
