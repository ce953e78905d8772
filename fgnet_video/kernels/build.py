"""Compiling the CUDA plugin of the StyleGAN2 ops: where builds live, what they are named,
and the build itself (loading and choosing a build is `plugin.py`).

The plugin is a plain shared library (sources in this folder; no Python module) that
registers the CUDA kernels of two PyTorch operators, `<name>::bias_act` and
`<name>::upfirdn2d`, with the dispatcher. Its name, `extension_name()`, is
fgnet_video_ops_<GPU arch tag>_<source hash>: the .so's file name and the operators'
namespace, unique per build, so two builds loaded into one process never share an operator.

The library is compiled once with `torch.utils.cpp_extension.load(is_python_module=False)`
into a cache directory keyed by the torch version, the CUDA version, the GPU architectures
built for and a hash of the sources, under `kernels/` in fgnet-video's cache folder
(`fgnet_video.cache.cache_dir`: $FGNET_VIDEO_HOME, else $XDG_CACHE_HOME/fgnet-video, else
~/.cache/fgnet-video); a cache shared by machines with different GPUs keeps one build per
kind. Processes starting at the same time serialise on a file lock in that directory, so one
of them compiles and the others load its result.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from fgnet_video.cache import cache_dir, file_lock
from fgnet_video.errors import UserError
from fgnet_video.kernels.toolkit import find_cuda_home, toolkit_problem

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")
HEADERS = ("ops.h", "common.h", "bias_act_kernels.h", "upfirdn2d_kernels.h")
_ARCH = re.compile(r"(\d+)\.(\d+[a-z]?)(\+PTX)?")
_CODE = re.compile(r"(\d+)(\d[a-z]?)(\+PTX)?")


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


def _torch_arch(code: str) -> str:
    """TORCH_CUDA_ARCH_LIST's spelling of an architecture code: '90a+PTX' -> '9.0a+PTX'."""
    match = _CODE.fullmatch(code)
    return f"{match.group(1)}.{match.group(2)}{match.group(3) or ''}"


def run_build(directory: Path, archs: tuple[str, ...] | None = None) -> Path:
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


def build_ahead(arch_list: str) -> Path:
    """Build the plugin for the GPU architectures in `arch_list` ('9.0,8.0') on a machine
    that need not have a GPU (a cluster's login node), into the cache folder that GPU nodes
    look in; returns the build's folder. The self-check runs on the first load on a GPU.
    UserError when the toolkit does not fit the installed torch or the build fails."""
    archs = parse_arch_list(arch_list)
    directory = build_dir(archs)
    try:
        run_build(directory, archs)
    except Exception as exc:  # noqa: BLE001 - one line for the user, the log beside it
        lines = str(exc).strip().splitlines()
        raise UserError(f"building the kernels for {arch_list} failed: "
                        f"{lines[0] if lines else type(exc).__name__}") from None
    return directory


