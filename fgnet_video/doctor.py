"""Environment report behind `fgnet-video doctor`: versions, devices, the kernels' default
implementation ($FGNET_VIDEO_KERNELS) and build state, face model files and video libraries,
as plain records the CLI prints."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from fgnet_video.errors import UserError
from fgnet_video.kernels import IMPL_ENV, build, default_impl


@dataclass(frozen=True)
class Item:
    """One reported fact; ok is False for a problem, True for a passed check, None for info."""

    name: str
    value: str
    ok: bool | None = None


@dataclass(frozen=True)
class Section:
    title: str
    items: tuple[Item, ...]


def python_and_torch() -> Section:
    cuda = torch.version.cuda
    items = [
        Item("python", f"{platform.python_version()} ({sys.executable})"),
        Item("platform", platform.platform()),
        Item("torch", torch.__version__),
        Item("torch CUDA", cuda or "none (CPU build)"),
    ]
    if torch.backends.cudnn.is_available():
        items.append(Item("cuDNN", str(torch.backends.cudnn.version())))
    available = torch.cuda.is_available()
    items.append(Item("CUDA available", "yes" if available else "no", available if cuda else None))
    if available:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            bf16 = "bf16" if props.major >= 8 else "no bf16"
            items.append(Item(f"cuda:{index}", f"{props.name}, compute {props.major}.{props.minor},"
                              f" {props.total_memory / 2**30:.1f} GiB, {bf16}"))
    else:
        items.append(Item("devices", f"cpu ({torch.get_num_threads()} threads)"))
    return Section("Python and PyTorch", tuple(items))


def _nvcc_version(cuda_home: str | None) -> str | None:
    nvcc = Path(cuda_home, "bin", "nvcc") if cuda_home else None
    command = str(nvcc) if nvcc and nvcc.exists() else shutil.which("nvcc")
    if command is None:
        return None
    try:
        out = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in out.stdout.splitlines() if "release" in line]
    return lines[-1].strip() if lines else None


def kernels(build_now: bool = False) -> Section:
    """The ops' default implementation (mode), build state and toolchain; with build_now,
    build the plugin first (unless the default is "ref")."""
    from torch.utils.cpp_extension import CUDA_HOME, is_ninja_available

    if build_now and default_impl() != "ref" and torch.cuda.is_available():
        with warnings.catch_warnings():  # the failure is reported below instead
            warnings.simplefilter("ignore", RuntimeWarning)
            build.load_plugin()
    status = build.plugin_status()
    items = [
        Item("mode", f"{status.mode} ({IMPL_ENV})"),
        Item("compiled plugin", status.state, {"failed": False, "built": True}.get(status.state)),
        Item("active path (CUDA tensors)", status.active_path),
        Item("active path (CPU tensors)", status.cpu_path),
        Item("build directory", str(status.directory)),
        Item("CUDA_HOME", CUDA_HOME or "not found",
             None if CUDA_HOME or not torch.version.cuda else False),
        Item("nvcc", _nvcc_version(CUDA_HOME) or "not found"),
        Item("ninja", "yes" if is_ninja_available() else "not found", is_ninja_available()),
    ]
    if status.error:
        items.append(Item("build error", status.error, False))
    return Section("Kernels", tuple(items))


def face_models() -> Section:
    """dlib and the landmark/detector model files of the face_recognition_models package."""
    try:
        import dlib

        from fgnet_video.face.landmarks import CNN_DETECTOR_MODEL, LANDMARKS_MODEL, model_file
    except ImportError as exc:
        return Section("Face models", (Item("dlib", f"not importable: {exc}", False),))
    items = [Item("dlib", f"{dlib.__version__} (CUDA: {bool(dlib.DLIB_USE_CUDA)})", True)]
    for name in (LANDMARKS_MODEL, CNN_DETECTOR_MODEL):
        try:
            items.append(Item(name, str(model_file(name)), True))
        except UserError as exc:
            items.append(Item(name, str(exc), False))
    return Section("Face models", tuple(items))


def video_libraries() -> Section:
    try:
        import av
    except ImportError as exc:
        return Section("Video", (Item("PyAV", f"not importable: {exc}", False),))
    libs = ", ".join(f"{name} {'.'.join(map(str, version))}"
                     for name, version in sorted(av.library_versions.items()))
    ffmpeg_cli = shutil.which("ffmpeg")
    return Section("Video", (
        Item("PyAV", av.__version__, True),
        Item("FFmpeg (PyAV's)", str(getattr(av, "ffmpeg_version_info", "unknown"))),
        Item("FFmpeg libraries", libs),
        Item("ffmpeg executable", ffmpeg_cli or "not on PATH (not needed)"),
    ))


def kernel_build_problem() -> str | None:
    """Why the compiled kernels are not usable now (one line), or None when they are built."""
    status = build.plugin_status()
    if status.mode == "ref":
        return f"{IMPL_ENV}=ref disables the compiled kernels"
    if not torch.cuda.is_available():
        return "the compiled kernels need a CUDA device, and torch sees none"
    if status.state != "built":
        return f"kernel build failed: {status.error or status.state}"
    return None


def environment_report(build_kernels: bool = False) -> list[Section]:
    """Everything `doctor` prints, in order."""
    return [python_and_torch(), kernels(build_kernels), face_models(), video_libraries()]
