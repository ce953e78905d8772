"""The compiled plugin of the StyleGAN2 ops: loaded (built first if need be, by `build.py`),
checked against the references on its first load (`selfcheck.py`), and chosen or not for
each call (`plugin_for`).

Loading a build loads the .so with `torch.ops.load_library`, then defines the namespace's
operators (`library.define_ops`: schemas, fake implementations, autograd); the "plugin" the
ops run on is the resulting `OpSet`.

Each op's `impl=` argument picks the path (see impl.py): "auto" uses the plugin for CUDA
tensors of fp32/fp16/bf16 and the reference elsewhere, "cuda" requires the plugin, "ref"
always uses the reference, None means the user's default ($FGNET_VIDEO_KERNELS, read once).
A failed build warns once, in one line, and every later "auto" call uses the reference.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from fgnet_video.atomic import atomic_path
from fgnet_video.errors import UserError
from fgnet_video.kernels.build import build_dir, prebuilt_library, run_build
from fgnet_video.kernels.impl import default_impl, resolve_impl
from fgnet_video.kernels.library import OpSet, define_ops
from fgnet_video.kernels.selfcheck import checked

COMPILED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class _State:
    ops: OpSet | None = None
    error: str | None = None  # one line; set once a build has failed
    warned: bool = False  # the failure was reported (on the first fallback to the reference)


_state = _State()
_lock = threading.Lock()


def check_device() -> torch.device:
    """Where a new build is checked against the references: the current CUDA device."""
    return torch.device("cuda", torch.cuda.current_device())


def _load_library(path: Path) -> OpSet:
    """The operators of a finished build (no compiler needed), in the namespace named by the
    .so's file name. The .so is loaded first (torch.ops.load_library; a file already loaded
    is not loaded again), which registers the CUDA kernels, then the operators are defined
    (`library.define_ops`): the dispatcher checks each kernel's C++ signature against its
    schema there, and a mismatch is a RuntimeError (in the other order it would end the
    process, thrown from the library's static initialiser)."""
    torch.ops.load_library(str(path))
    return define_ops(path.stem)


def _compile() -> OpSet:
    """The plugin for the visible GPUs: a finished build loaded directly (also one made
    ahead on another machine), else built now."""
    library = prebuilt_library()
    if library is None:
        library = run_build(build_dir())
    return _load_library(library)


def _build_once() -> OpSet | None:
    """The compiled plugin, building it on first use and checking it against the references
    on its first load (`selfcheck.checked`); None once a build has failed or failed its
    self-check (the one line kept in `_state.error`; a build's whole message in
    build-error.log). Never warns."""
    with _lock:
        if _state.ops is not None or _state.error is not None:
            return _state.ops
        try:
            if not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available to this torch build")
            ops = _compile()
            problem = checked(ops, build_dir(), check_device())
            if problem is not None:
                _state.error = problem
                return None
            _state.ops = ops
        except Exception as exc:  # noqa: BLE001 - any build failure means: no plugin
            lines = str(exc).strip().splitlines()
            _state.error = f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"
            log = _write_error_log(exc)
            if log is not None and len(lines) > 1:
                _state.error += f" (full log: {log})"
        return _state.ops


def load_plugin() -> OpSet | None:
    """The compiled plugin, building it on first use; None if that fails, after a one-line
    warning (given once) that the PyTorch reference ops are used instead."""
    ops = _build_once()
    with _lock:
        if ops is None and not _state.warned:
            _state.warned = True
            warnings.warn(
                f"fgnet-video: compiled kernels unavailable ({_state.error}); "
                "using the PyTorch reference ops", RuntimeWarning, stacklevel=3)
    return ops


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


def plugin_for(impl: str | None, *tensors: torch.Tensor | None) -> OpSet | None:
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
    ops = _build_once()
    if ops is None:
        raise UserError(f"impl='cuda' needs the compiled kernels, which are unavailable "
                        f"({_state.error})")
    return ops


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
    elif _state.ops is not None:
        state = "built"
    else:
        state = "not built yet"
    return PluginStatus(mode=mode, state=state, directory=build_dir(), error=_state.error)


def reset_plugin_state() -> None:
    """Forget a loaded plugin, a failed build and its warning, so the next call tries again,
    and the default impl, so the next call reads $FGNET_VIDEO_KERNELS again. (Operators
    defined and libraries loaded stay in the process: loading the same build again finds
    them.)"""
    with _lock:
        _state.ops = None
        _state.error = None
        _state.warned = False
    default_impl.cache_clear()
