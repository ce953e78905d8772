"""Lazily built CUDA plugin for the StyleGAN2 ops, and the choice between it and the references.

The plugin (sources in this folder) is compiled once with `torch.utils.cpp_extension.load`
into a cache directory keyed by the torch version, the CUDA version, the GPU architectures
built for and a hash of the sources, under `kernels/` in fgnet-video's cache folder
(`fgnet_video.cache.cache_dir`: $FGNET_VIDEO_HOME, else $XDG_CACHE_HOME/fgnet-video, else
~/.cache/fgnet-video); a cache shared by machines with different GPUs keeps one build per
kind. Processes starting at the same time serialise on a file lock in that directory, so one
of them compiles and the others load its result.

Each op's `impl=` argument picks the path (see impl.py): "auto" uses the plugin for CUDA
tensors of fp32/fp16/bf16 and the reference elsewhere, "cuda" requires the plugin, "ref"
always uses the reference, None means the user's default ($FGNET_VIDEO_KERNELS, read once).
A failed build warns once, in one line, and every later "auto" call uses the reference.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from fgnet_video.atomic import atomic_path
from fgnet_video.cache import cache_dir, file_lock
from fgnet_video.errors import UserError
from fgnet_video.kernels.impl import default_impl, resolve_impl
from fgnet_video.kernels.selfcheck import checked

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")
HEADERS = ("ops.h", "common.h", "bias_act_kernels.h", "upfirdn2d_kernels.h")
COMPILED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class _State:
    module: ModuleType | None = None
    error: str | None = None  # one line; set once a build has failed
    warned: bool = False  # the failure was reported (on the first fallback to the reference)


_state = _State()
_lock = threading.Lock()


def cache_root() -> Path:
    """Where compiled kernels live: `kernels/` in fgnet-video's cache folder."""
    return cache_dir() / "kernels"


def source_hash() -> str:
    """SHA-256 (first 16 hex digits) over the plugin's source and header files."""
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update(name.encode())
        digest.update((SOURCE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def gpu_arch_tag() -> str:
    """The GPU architectures a build targets: TORCH_CUDA_ARCH_LIST when set, else those of
    the visible devices (a cache shared by machines with different GPUs keeps one build each)."""
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if arch_list:
        return "arch" + "".join(c for c in arch_list if c.isalnum())
    if not torch.cuda.is_available():
        return "nogpu"
    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return "sm" + "_".join(f"{major}{minor}" for major, minor in caps)


def build_dir() -> Path:
    """The directory of this torch / CUDA / GPU architecture / source combination."""
    torch_version = torch.__version__.split("+")[0]
    cuda_version = (torch.version.cuda or "none").replace(".", "")
    return cache_root() / (
        f"torch{torch_version}-cu{cuda_version}-{gpu_arch_tag()}-{source_hash()}")


def extension_name() -> str:
    """Python module name of the plugin; unique per source hash so versions never clash."""
    return f"fgnet_video_ops_{source_hash()}"


def check_device() -> torch.device:
    """Where a new build is checked against the references: the current CUDA device."""
    return torch.device("cuda", torch.cuda.current_device())


def _compile() -> ModuleType:
    """Build (or load the cached build of) the plugin, holding a file lock meanwhile."""
    from torch.utils.cpp_extension import load

    directory = build_dir()
    with file_lock(directory / "build.lock"):  # creates `directory` too
        return load(
            name=extension_name(),
            sources=[str(SOURCE_DIR / s) for s in SOURCES],
            extra_include_paths=[str(SOURCE_DIR)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            build_directory=str(directory),
            verbose=False,
        )


def _build_once() -> ModuleType | None:
    """The compiled plugin, building it on first use and checking it against the references
    on its first load (`selfcheck.checked`); None once a build has failed or failed its
    self-check (the one line kept in `_state.error`; a build's whole message in
    build-error.log). Never warns."""
    with _lock:
        if _state.module is not None or _state.error is not None:
            return _state.module
        try:
            if not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available to this torch build")
            module = _compile()
            problem = checked(module, build_dir(), check_device())
            if problem is not None:
                _state.error = problem
                return None
            _state.module = module
        except Exception as exc:  # noqa: BLE001 - any build failure means: no plugin
            lines = str(exc).strip().splitlines()
            _state.error = f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"
            log = _write_error_log(exc)
            if log is not None and len(lines) > 1:
                _state.error += f" (full log: {log})"
        return _state.module


def load_plugin() -> ModuleType | None:
    """The compiled plugin, building it on first use; None if that fails, after a one-line
    warning (given once) that the PyTorch reference ops are used instead."""
    module = _build_once()
    with _lock:
        if module is None and not _state.warned:
            _state.warned = True
            warnings.warn(
                f"fgnet-video: compiled kernels unavailable ({_state.error}); "
                "using the PyTorch reference ops", RuntimeWarning, stacklevel=3)
    return module


def _write_error_log(exc: Exception) -> Path | None:
    """Keep a failed build's whole message (compiler output) next to the build; its path."""
    path = build_dir() / "build-error.log"
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(f"{type(exc).__name__}: {exc}\n")
    except OSError:
        return None
    return path


def _describe(tensor: torch.Tensor) -> str:
    return f"{tensor.device.type} {str(tensor.dtype).removeprefix('torch.')}"


def plugin_for(impl: str | None, *tensors: torch.Tensor | None) -> ModuleType | None:
    """The plugin an op with argument `impl` runs on for these tensors (None entries are
    skipped), or None for the reference: see impl.py. "cuda" raises UserError when a tensor
    is not a CUDA tensor of fp32/fp16/bf16 or the plugin is unavailable; an unknown impl
    raises ValueError."""
    impl = resolve_impl(impl)
    if impl == "ref":
        return None
    present = [t for t in tensors if t is not None]
    unsuited = [t for t in present if not (t.is_cuda and t.dtype in COMPILED_DTYPES)]
    if impl == "auto":
        return None if unsuited else load_plugin()
    if unsuited:
        raise UserError(f"impl='cuda' runs the compiled kernels on CUDA tensors of fp32, fp16 "
                        f"or bf16, not on a {_describe(unsuited[0])} tensor")
    module = _build_once()
    if module is None:
        raise UserError(f"impl='cuda' needs the compiled kernels, which are unavailable "
                        f"({_state.error})")
    return module


@dataclass(frozen=True)
class PluginStatus:
    """What `doctor` reports: the default impl (mode), build state, where the build lives."""

    mode: str  # default_impl()
    state: str  # 'not built yet', 'built', 'failed', 'disabled'
    directory: Path
    error: str | None

    @property
    def active_path(self) -> str:
        """Which implementation CUDA tensors go through by default right now."""
        if self.mode == "ref":
            return "reference"
        if self.state == "failed" or not torch.cuda.is_available():
            return "reference" if self.mode == "auto" else "none (the ops raise an error)"
        return "compiled" if self.state == "built" else "compiled (built on first use)"

    @property
    def cpu_path(self) -> str:
        """Which implementation CPU tensors go through by default."""
        return "none (the ops raise an error)" if self.mode == "cuda" else "reference"


def plugin_status() -> PluginStatus:
    """The plugin's state without building it; UserError for a bad $FGNET_VIDEO_KERNELS."""
    mode = default_impl()
    if mode == "ref":
        state = "disabled"
    elif _state.error is not None:
        state = "failed"
    elif _state.module is not None:
        state = "built"
    else:
        state = "not built yet"
    return PluginStatus(mode=mode, state=state, directory=build_dir(), error=_state.error)


def reset_plugin_state() -> None:
    """Forget a loaded plugin, a failed build and its warning, so the next call tries again,
    and the default impl, so the next call reads $FGNET_VIDEO_KERNELS again."""
    with _lock:
        _state.module = None
        _state.error = None
        _state.warned = False
    default_impl.cache_clear()
