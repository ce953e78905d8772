"""`fgnet-video doctor`: the report's content and the --build outcome."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from click.testing import CliRunner

from fgnet_video.cli import main
from fgnet_video.doctor import environment_report, kernel_build_problem
from fgnet_video.face.landmarks import CNN_DETECTOR_MODEL, LANDMARKS_MODEL
from fgnet_video.kernels import kernel_mode


def test_report_sections_and_facts():
    sections = {s.title: {i.name: i for i in s.items} for s in environment_report()}
    assert list(sections) == ["Python and PyTorch", "Kernels", "Face models", "Video"]
    assert sections["Python and PyTorch"]["torch"].value == torch.__version__
    kernels = sections["Kernels"]
    assert kernels["mode"].value.startswith(kernel_mode())
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


def test_doctor_cli_prints_report():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    for title in ("Python and PyTorch", "Kernels", "Face models", "Video"):
        assert title in result.output
    assert "compiled plugin" in result.output


def test_doctor_build_reports_why_kernels_are_unusable(monkeypatch):
    monkeypatch.setenv("FGNET_VIDEO_KERNELS", "ref")
    assert "FGNET_VIDEO_KERNELS=ref" in kernel_build_problem()
    result = CliRunner().invoke(main, ["doctor", "--build"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "fgnet-video: error: FGNET_VIDEO_KERNELS=ref disables the compiled kernels")
    if not torch.cuda.is_available():
        monkeypatch.setenv("FGNET_VIDEO_KERNELS", "auto")
        result = CliRunner().invoke(main, ["doctor", "--build"])
        assert result.exit_code == 1 and "need a CUDA device" in result.output
