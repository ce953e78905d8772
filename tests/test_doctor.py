"""`fgnet-video doctor`: the report's content and the --build outcome."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fgnet_video.cli import main
from fgnet_video.face.landmarks import CNN_DETECTOR_MODEL, LANDMARKS_MODEL
from fgnet_video.kernels import default_impl
from fgnet_video.reports.doctor import (
    Item,
    TorchBuild,
    build_check,
    environment_report,
    kernel_build_problem,
    torch_build,
)


@pytest.fixture
def kernels_env(monkeypatch):
    """Set FGNET_VIDEO_KERNELS for one test: the default impl is read once per process, so
    it is forgotten after each change and after the test."""

    def set_default(value: str) -> None:
        monkeypatch.setenv("FGNET_VIDEO_KERNELS", value)
        default_impl.cache_clear()

    yield set_default
    default_impl.cache_clear()


def test_report_sections_and_facts(kernels_env):
    kernels_env("auto")
    sections = {s.title: {i.name: i for i in s.items} for s in environment_report()}
    assert list(sections) == ["Python and PyTorch", "Kernels", "Face models", "Video"]
    assert sections["Python and PyTorch"]["torch"].value == torch.__version__
    kernels = sections["Kernels"]
    assert kernels["mode"].value == "auto (FGNET_VIDEO_KERNELS)"
    assert kernels["active path (CPU tensors)"].value == "reference"
    if not torch.cuda.is_available():
        assert kernels["active path (CUDA tensors)"].value == "reference"
    spec = importlib.util.find_spec("face_recognition_models")
    for name in (LANDMARKS_MODEL, CNN_DETECTOR_MODEL):
        present = spec is not None and (
            Path(spec.submodule_search_locations[0]) / "models" / name).is_file()
        assert sections["Face models"][name].ok is present
    import av

    assert sections["Video"]["PyAV"].value == av.__version__


def test_report_follows_the_default_impl(kernels_env):
    for value, cpu_path in (("ref", "reference"), ("cuda", "none (the ops raise an error)")):
        kernels_env(value)
        (section,) = [s for s in environment_report() if s.title == "Kernels"]
        items = {i.name: i.value for i in section.items}
        assert items["mode"] == f"{value} (FGNET_VIDEO_KERNELS)"
        assert items["active path (CPU tensors)"] == cpu_path


def test_doctor_cli_prints_report():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    for title in ("Python and PyTorch", "Kernels", "Face models", "Video"):
        assert title in result.output
    assert "compiled plugin" in result.output


def test_doctor_build_reports_why_kernels_are_unusable(kernels_env):
    kernels_env("ref")
    assert "FGNET_VIDEO_KERNELS=ref" in kernel_build_problem()
    result = CliRunner().invoke(main, ["doctor", "--build"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "fgnet-video: error: FGNET_VIDEO_KERNELS=ref disables the compiled kernels")
    if not torch.cuda.is_available():
        kernels_env("auto")
        result = CliRunner().invoke(main, ["doctor", "--build"])
        assert result.exit_code == 1 and "need a CUDA device" in result.output


def _build_items() -> dict[str, Item]:
    (section,) = [s for s in environment_report() if s.title == "Python and PyTorch"]
    return {item.name: item for item in section.items}


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the CPU-only build")
def test_cpu_only_build_is_named_and_checked_against_the_machine():
    items = _build_items()
    assert items["torch build"].value == "CPU-only"
    check = items["build matches machine"]
    if items["NVIDIA driver"].value == "none found":
        assert check.ok is True and "CPU-only build, no NVIDIA driver" in check.value
    else:
        assert check.ok is False and "install a CUDA build" in check.value
    result = CliRunner().invoke(main, ["doctor"])
    assert "torch build" in result.output and "CPU-only" in result.output


def test_cuda_build_facts_come_from_torch(monkeypatch):
    """A CUDA 12.8 build on a machine whose driver supports CUDA 12.4 and whose GPU torch
    cannot use: what torch says is what the report says."""
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 12040, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert torch_build() == TorchBuild("12.8", "12.4", 0)
    items = _build_items()
    assert items["torch build"].value == "CUDA 12.8"
    assert items["NVIDIA driver"].value == "supports CUDA 12.4"
    check = items["build matches machine"]
    assert check.ok is False and "driver supports only CUDA 12.4" in check.value


def test_driver_version_from_nvidia_smi_without_torch_cuda(monkeypatch, tmp_path):
    """A CPU-only build cannot ask the driver: nvidia-smi's header says its CUDA version."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   "
                   "CUDA Version: 12.4     |'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delattr(torch._C, "_cuda_getDriverVersion", raising=False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert torch_build().driver_cuda == "12.4"


@pytest.mark.parametrize(("build", "ok", "says"), [
    (TorchBuild(None, None, 0), True, "CPU-only build, no NVIDIA driver found"),
    (TorchBuild(None, "12.4", 0), False, "install a CUDA build of torch"),
    (TorchBuild("12.8", "12.8", 1), True, "CUDA 12.8 build, 1 GPU(s) usable"),
    (TorchBuild("12.8", "12.4", 2), True, "2 GPU(s) usable"),  # minor-version compatibility
    (TorchBuild("12.8", None, 0), False, "no NVIDIA driver or GPU is visible"),
    (TorchBuild("12.8", "11.8", 0), False, "driver supports only CUDA 11.8; update the driver"),
    (TorchBuild("12.8", "12.10", 0), False, "torch sees no GPU (CUDA_VISIBLE_DEVICES='')"),
])
def test_build_check_says_whether_the_build_suits_the_machine(build, ok, says, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    check = build_check(build)
    assert check.ok is ok and says in check.value
