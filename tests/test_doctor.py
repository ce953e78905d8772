"""`fgnet-video doctor`: the report's content and the --build outcome."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fgnet_video.cli import main
from fgnet_video.doctor import environment_report, kernel_build_problem
from fgnet_video.face.landmarks import CNN_DETECTOR_MODEL, LANDMARKS_MODEL
from fgnet_video.kernels import default_impl


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
