"""Lazily built CUDA plugin for the StyleGAN2 ops, and the choice between it and the references.

The plugin (sources in this folder) is compiled once with `torch.utils.cpp_extension.load`
into a cache directory keyed by the torch version, the CUDA version, the GPU architectures
built for and a hash of the sources, under `$FGNET_VIDEO_HOME/kernels/` when
FGNET_VIDEO_HOME is set, else `$XDG_CACHE_HOME/fgnet-video/kernels/` (default
`~/.cache/fgnet-video/kernels/`); a cache shared by machines with different GPUs keeps one
build per kind. Processes starting at the same time serialise on a file lock in that
directory, so one of them compiles and the others load its result.

`FGNET_VIDEO_KERNELS` picks the path: `auto` (default) uses the plugin for CUDA tensors and
the pure-PyTorch reference elsewhere; `ref` always uses the reference. A failed build warns
once, in one line, and every later call uses the reference.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from fgnet_video.atomic import atomic_path
from fgnet_video.errors import UserError

MODE_ENV = "FGNET_VIDEO_KERNELS"
MODES = ("auto", "ref")
SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")
HEADERS = ("ops.h", "common.h", "bias_act_kernels.h", "upfirdn2d_kernels.h")
COMPILED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class _State:
    module: ModuleType | None = None
    error: str | None = None  # one line; set once a build has failed


_state = _State()
_lock = threading.Lock()


def kernel_mode() -> str:
    """The value of FGNET_VIDEO_KERNELS ('auto' when unset); UserError when unknown."""
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise UserError(f"{MODE_ENV} must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def cache_root() -> Path:
    """Where compiled kernels live: `kernels/` in fgnet-video's cache directory."""
    from fgnet_video.weights import cache_dir  # imported late: weights imports the model

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


def _compile() -> ModuleType:
    """Build (or load the cached build of) the plugin, holding a file lock meanwhile."""
    from torch.utils.cpp_extension import load

    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with _file_lock(directory / "build.lock"):
        return load(
            name=extension_name(),
            sources=[str(SOURCE_DIR / s) for s in SOURCES],
            extra_include_paths=[str(SOURCE_DIR)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            build_directory=str(directory),
            verbose=False,
        )


def load_plugin() -> ModuleType | None:
    """The compiled plugin, building it on first use; None (after one warning) if that fails."""
    with _lock:
        if _state.module is not None or _state.error is not None:
            return _state.module
        try:
            if not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available to this torch build")
            _state.module = _compile()
        except Exception as exc:  # noqa: BLE001 - any build failure means: use the reference
            lines = str(exc).strip().splitlines()
            _state.error = f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"
            log = _write_error_log(exc)
            if log is not None and len(lines) > 1:
                _state.error += f" (full log: {log})"
            warnings.warn(
                f"fgnet-video: compiled kernels unavailable ({_state.error}); "
                "using the PyTorch reference ops", RuntimeWarning, stacklevel=3)
        return _state.module


def _write_error_log(exc: Exception) -> Path | None:
    """Keep a failed build's whole message (compiler output) next to the build; its path."""
    path = build_dir() / "build-error.log"
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(f"{type(exc).__name__}: {exc}\n")
    except OSError:
        return None
    return path


def plugin_for(*tensors: torch.Tensor | None) -> ModuleType | None:
    """The plugin when every given tensor may use it (CUDA, fp32/fp16/bf16, mode 'auto')."""
    present = [t for t in tensors if t is not None]
    if kernel_mode() == "ref":
        return None
    if not all(t.is_cuda and t.dtype in COMPILED_DTYPES for t in present):
        return None
    return load_plugin()


@dataclass(frozen=True)
class PluginStatus:
    """What `doctor` reports: mode, build state, and where the build lives."""

    mode: str
    state: str  # 'not built yet', 'built', 'failed', 'disabled'
    directory: Path
    error: str | None

    @property
    def active_path(self) -> str:
        """Which implementation CUDA tensors go through right now."""
        if self.mode == "ref" or self.state == "failed" or not torch.cuda.is_available():
            return "reference"
        return "compiled" if self.state == "built" else "compiled (built on first use)"


def plugin_status() -> PluginStatus:
    """The plugin's state without building it."""
    mode = kernel_mode()
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
    """Forget a loaded plugin or a failed build, so the next call tries again."""
    with _lock:
        _state.module = None
        _state.error = None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on `path` (POSIX flock; the OS releases it if the holder dies,
    so a crashed build never blocks later ones). Where flock is missing, torch's own build
    lock still serialises the compilation."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
