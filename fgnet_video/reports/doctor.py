"""Environment report behind `fgnet-video doctor`: versions, devices, the kernels' default
implementation ($FGNET_VIDEO_KERNELS) and build state, face model files and video libraries,
as plain records the CLI prints."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass

import torch

from fgnet_video.errors import UserError
from fgnet_video.kernels import IMPL_ENV, default_impl, plugin
from fgnet_video.kernels.selfcheck import read_verdict
from fgnet_video.kernels.toolkit import find_cuda_home, toolkit_problem


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


@dataclass(frozen=True)
class TorchBuild:
    """Which torch build is installed and what the machine offers it.

    `cuda`: the CUDA version torch was built for (torch.version.cuda), None for a CPU-only
    build; `driver_cuda`: the newest CUDA version the NVIDIA driver supports, None when no
    driver is found; `devices`: the GPUs torch can use."""

    cuda: str | None
    driver_cuda: str | None
    devices: int


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _driver_cuda() -> str | None:
    """The CUDA version the NVIDIA driver supports ("12.4"): from torch on a CUDA build
    (cudaDriverGetVersion needs no GPU), else from nvidia-smi's header; None without a
    driver."""
    get_version = getattr(torch._C, "_cuda_getDriverVersion", None)  # CUDA builds only
    if get_version is not None:
        try:
            version = get_version()
        except RuntimeError:
            version = 0
        if version:
            return f"{version // 1000}.{version % 1000 // 10}"
    command = shutil.which("nvidia-smi")
    if command is None:
        return None
    try:
        out = subprocess.run([command], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"CUDA Version:\s*(\d+\.\d+)", out.stdout)
    return match[1] if match else None


def torch_build() -> TorchBuild:
    """The installed build and the machine's driver and GPUs (works without a GPU)."""
    with warnings.catch_warnings():  # a CUDA build without a driver warns; reported instead
        warnings.simplefilter("ignore", UserWarning)
        devices = torch.cuda.device_count()
    return TorchBuild(torch.version.cuda, _driver_cuda(), devices)


def build_check(build: TorchBuild) -> Item:
    """Whether the torch build suits this machine, and what to install when it does not."""
    if build.cuda is None:
        if build.driver_cuda is None:
            return Item("build matches machine", "yes: CPU-only build, no NVIDIA driver found",
                        True)
        return Item("build matches machine",
                    f"no: this machine has an NVIDIA driver (CUDA {build.driver_cuda}) but torch "
                    "is CPU-only; install a CUDA build of torch to use the GPU", False)
    if build.devices:
        return Item("build matches machine",
                    f"yes: CUDA {build.cuda} build, {build.devices} GPU(s) usable", True)
    if build.driver_cuda is None:
        return Item("build matches machine",
                    f"no: CUDA {build.cuda} build, but no NVIDIA driver or GPU is visible, so "
                    "everything runs on the CPU; on a machine without a GPU the CPU-only build "
                    "is the one to install (several GB smaller)", False)
    if _version_tuple(build.driver_cuda) < _version_tuple(build.cuda):
        return Item("build matches machine",
                    f"no: CUDA {build.cuda} build, but the NVIDIA driver supports only CUDA "
                    f"{build.driver_cuda}; update the driver, or install a torch build for "
                    f"CUDA {build.driver_cuda} or older", False)
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    why = f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else ""
    return Item("build matches machine",
                f"no: CUDA {build.cuda} build and a driver for CUDA {build.driver_cuda}, but "
                f"torch sees no GPU{why}", False)


def python_and_torch() -> Section:
    build = torch_build()
    items = [
        Item("python", f"{platform.python_version()} ({sys.executable})"),
        Item("platform", platform.platform()),
        Item("torch", torch.__version__),
        Item("torch build", f"CUDA {build.cuda}" if build.cuda else "CPU-only"),
        Item("NVIDIA driver", f"supports CUDA {build.driver_cuda}" if build.driver_cuda
             else "none found"),
        build_check(build),
    ]
    if torch.backends.cudnn.is_available():
        items.append(Item("cuDNN", str(torch.backends.cudnn.version())))
    if build.devices:
        for index in range(build.devices):
            props = torch.cuda.get_device_properties(index)
            bf16 = "bf16" if props.major >= 8 else "no bf16"
            items.append(Item(f"cuda:{index}", f"{props.name}, compute {props.major}.{props.minor},"
                              f" {props.total_memory / 2**30:.1f} GiB, {bf16}"))
    else:
        items.append(Item("devices", f"cpu ({torch.get_num_threads()} threads)"))
    return Section("Python and PyTorch", tuple(items))


def _toolkit_item() -> Item:
    """The CUDA toolkit the kernels would be built with, and whether it fits torch."""
    toolkit = find_cuda_home()
    found = ("not found" if toolkit is None else
             f"{toolkit.version or 'unknown version'} at {toolkit.home} ({toolkit.found_by})")
    if not torch.version.cuda:
        return Item("CUDA toolkit", found)
    problem = toolkit_problem(toolkit)
    return Item("CUDA toolkit", found if problem is None else f"{found}: {problem}",
                problem is None)


def kernels(build_now: bool = False) -> Section:
    """The ops' default implementation (mode), build state and toolchain; with build_now,
    build the plugin first (unless the default is "ref")."""
    from torch.utils.cpp_extension import is_ninja_available

    if build_now and default_impl() != "ref" and torch.cuda.is_available():
        with warnings.catch_warnings():  # the failure is reported below instead
            warnings.simplefilter("ignore", RuntimeWarning)
            plugin.load_plugin()
    status = plugin.plugin_status()
    items = [
        Item("mode", f"{status.mode} ({IMPL_ENV})"),
        Item("compiled plugin", status.state, {"failed": False, "built": True}.get(status.state)),
        Item("active path (CUDA tensors)", status.active_path),
        Item("active path (CPU tensors)", status.cpu_path),
        Item("build directory", str(status.directory)),
        _toolkit_item(),
        Item("ninja", "yes" if is_ninja_available() else "not found", is_ninja_available()),
    ]
    verdict = read_verdict(status.directory)
    if verdict is not None:
        items.append(Item("self-check", f"passed on {verdict.get('device')}" if verdict["ok"]
                          else f"FAILED on {verdict.get('device')}: {verdict.get('problem')}",
                          bool(verdict["ok"])))
    else:
        items.append(Item("self-check", "not run yet (on the first load of the build)"))
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
    status = plugin.plugin_status()
    if status.mode == "ref":
        return f"{IMPL_ENV}=ref disables the compiled kernels"
    if not torch.cuda.is_available():
        return ("the compiled kernels need a CUDA device, and torch sees none (to build "
                "ahead for GPU nodes: doctor --build --arch 9.0)")
    if status.state != "built":
        return f"kernel build failed: {status.error or status.state}"
    return None


def environment_report(build_kernels: bool = False) -> list[Section]:
    """Everything `doctor` prints, in order."""
    return [python_and_torch(), kernels(build_kernels), face_models(), video_libraries()]
