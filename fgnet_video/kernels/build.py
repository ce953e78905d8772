"""Lazily built CUDA plugin for the StyleGAN2 ops, and the choice between it and the references.

The plugin is a plain shared library (sources in this folder; no Python module) that
registers the CUDA kernels of two PyTorch operators, `<name>::bias_act` and
`<name>::upfirdn2d`, with the dispatcher; library.py defines the operators themselves
(schemas, fake implementations, autograd). Its name, `extension_name()`, is
fgnet_video_ops_<GPU arch tag>_<source hash>: the .so's file name and the operators'
namespace, unique per build, so two builds loaded into one process never share an operator.
Loading a build loads the .so with `torch.ops.load_library`, then defines the namespace's
operators (`library.define_ops`); the "plugin" the ops run on is the resulting `OpSet`.

The library is compiled once with `torch.utils.cpp_extension.load(is_python_module=False)`
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
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from fgnet_video.atomic import atomic_path
from fgnet_video.cache import cache_dir, file_lock
from fgnet_video.errors import UserError
from fgnet_video.kernels.impl import default_impl, resolve_impl
from fgnet_video.kernels.library import OpSet, define_ops
from fgnet_video.kernels.selfcheck import checked
from fgnet_video.kernels.toolkit import find_cuda_home, toolkit_problem

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")
HEADERS = ("ops.h", "common.h", "bias_act_kernels.h", "upfirdn2d_kernels.h")
COMPILED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_ARCH = re.compile(r"(\d+)\.(\d+[a-z]?)(\+PTX)?")
_CODE = re.compile(r"(\d+)(\d[a-z]?)(\+PTX)?")


@dataclass
class _State:
    ops: OpSet | None = None
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


def parse_arch_list(text: str) -> tuple[str, ...]:
    """GPU architectures from '9.0,8.0' or '8.0;9.0+PTX' (TORCH_CUDA_ARCH_LIST's syntax,
    commas also allowed) as sorted codes ('80', '90', '90+PTX'); UserError when malformed."""
    codes = set()
    for part in re.split(r"[,; ]+", text.strip()):
        if not part:
            continue
        match = _ARCH.fullmatch(part)
        if match is None:
            raise UserError(f"--arch takes compute capabilities like 8.0,9.0 (or 9.0+PTX), "
                            f"not {part!r}")
        codes.add(f"{match.group(1)}{match.group(2)}{'+PTX' if match.group(3) else ''}")
    if not codes:
        raise UserError("--arch needs at least one compute capability, e.g. 9.0")
    return tuple(sorted(codes))


def visible_archs() -> tuple[str, ...]:
    """The compute capabilities of the visible GPUs ('90', ...), () without a GPU."""
    if not torch.cuda.is_available():
        return ()
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return tuple(sorted(f"{major}{minor}" for major, minor in caps))


def gpu_arch_tag(archs: tuple[str, ...] | None = None) -> str:
    """The folder-name tag of a build for `archs` (default: TORCH_CUDA_ARCH_LIST when set,
    else the visible GPUs): 'sm80_90'; the same archs give the same tag however they were
    named, so a build made ahead for 9.0 is the one a 9.0 GPU node looks for."""
    if archs is None:
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")
        if not arch_list:
            archs = visible_archs()
        else:
            try:
                archs = parse_arch_list(arch_list)
            except UserError:  # names torch knows ('Hopper'): a tag of their own
                return "arch" + "".join(c for c in arch_list if c.isalnum())
    if not archs:
        return "nogpu"
    return "sm" + "_".join(a.replace("+PTX", "ptx") for a in archs)


def _build_prefix() -> str:
    torch_version = torch.__version__.split("+")[0]
    cuda_version = (torch.version.cuda or "none").replace(".", "")
    return f"torch{torch_version}-cu{cuda_version}-"


def build_dir(archs: tuple[str, ...] | None = None) -> Path:
    """The directory of this torch / CUDA / GPU architecture / source combination."""
    return cache_root() / f"{_build_prefix()}{gpu_arch_tag(archs)}-{source_hash()}"


def _library_name(tag: str) -> str:
    return f"fgnet_video_ops_{tag}_{source_hash()}"


def extension_name(archs: tuple[str, ...] | None = None) -> str:
    """The name of the build for `archs` (default as in `gpu_arch_tag`), which is both its
    .so's file name and its operators' namespace: fgnet_video_ops_<arch tag>_<source hash>."""
    return _library_name(gpu_arch_tag(archs))


def prebuilt_library() -> Path | None:
    """The .so of a finished build that serves the visible GPUs: the exact build's, else
    that of one built ahead for a set of architectures that includes theirs
    (`build_ahead`)."""
    exact = build_dir() / f"{extension_name()}.so"
    if exact.is_file():
        return exact
    wanted = set(visible_archs())
    root = cache_root()
    if not wanted or not root.is_dir():
        return None
    suffix = f"-{source_hash()}"
    for candidate in sorted(root.glob(f"{_build_prefix()}sm*{suffix}")):
        tag = candidate.name[len(_build_prefix()):-len(suffix)]
        built = {a.removesuffix("ptx") for a in tag.removeprefix("sm").split("_")}
        library = candidate / f"{_library_name(tag)}.so"
        if wanted <= built and library.is_file():
            return library
    return None


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


def _torch_arch(code: str) -> str:
    """TORCH_CUDA_ARCH_LIST's spelling of an architecture code: '90a+PTX' -> '9.0a+PTX'."""
    match = _CODE.fullmatch(code)
    return f"{match.group(1)}.{match.group(2)}{match.group(3) or ''}"


def _run_build(directory: Path, archs: tuple[str, ...] | None = None) -> Path:
    """Compile the plugin into `directory` with torch's JIT build (for `archs`, when given,
    instead of the visible GPUs), with the toolkit `toolkit.find_cuda_home` finds, holding
    the directory's file lock; the .so's path. The JIT build also loads the .so into this
    process, which registers its kernels under its own namespace and nothing else.
    RuntimeError naming the problem when the toolkit does not fit the installed torch."""
    import torch.utils.cpp_extension as cpp_extension

    toolkit = find_cuda_home()
    problem = toolkit_problem(toolkit)
    if problem is not None:
        raise RuntimeError(problem)
    cpp_extension.CUDA_HOME = str(toolkit.home)  # what torch's build uses from here on
    previous = os.environ.get("TORCH_CUDA_ARCH_LIST")
    with file_lock(directory / "build.lock"):  # creates `directory` too
        if archs is not None:  # torch reads the target architectures from here
            os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(_torch_arch(a) for a in archs)
        try:
            return Path(cpp_extension.load(
                name=extension_name(archs),
                sources=[str(SOURCE_DIR / s) for s in SOURCES],
                extra_include_paths=[str(SOURCE_DIR)],
                extra_cflags=["-O3"],
                extra_cuda_cflags=["-O3"],
                build_directory=str(directory),
                verbose=False,
                is_python_module=False,
            ))
        finally:
            if archs is not None:
                if previous is None:
                    os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
                else:
                    os.environ["TORCH_CUDA_ARCH_LIST"] = previous


def _compile() -> OpSet:
    """The plugin for the visible GPUs: a finished build loaded directly (also one made
    ahead on another machine), else built now."""
    library = prebuilt_library()
    if library is None:
        library = _run_build(build_dir())
    return _load_library(library)


def build_ahead(arch_list: str) -> Path:
    """Build the plugin for the GPU architectures in `arch_list` ('9.0,8.0') on a machine
    that need not have a GPU (a cluster's login node), into the cache folder that GPU nodes
    look in; returns the build's folder. The self-check runs on the first load on a GPU.
    UserError when the toolkit does not fit the installed torch or the build fails."""
    archs = parse_arch_list(arch_list)
    directory = build_dir(archs)
    try:
        _run_build(directory, archs)
    except Exception as exc:  # noqa: BLE001 - one line for the user, the log beside it
        lines = str(exc).strip().splitlines()
        raise UserError(f"building the kernels for {arch_list} failed: "
                        f"{lines[0] if lines else type(exc).__name__}") from None
    return directory


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
