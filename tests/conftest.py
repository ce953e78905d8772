"""Shared fixtures: paths into ../shared (skipped when absent) and small models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
MEDIA = SHARED / "media"

torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `cuda` need a CUDA GPU: skipped with the reason without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def shared_path(*parts: str) -> Path:
    """A path under ../shared; when it is absent, a skip with the reason, or a failure in CI
    (CI=true), where ../shared must be there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f"{path} is absent (../shared holds the reference data and test media)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def same_clip_twice(tmp_path: Path, weights: Path, detector: str):
    """(options, plan) of a study of vox_talking twice (tmp_path/in/c0.mp4, c1.mp4) at 5
    frames/s with `detector` and `weights`, into tmp_path/out."""
    import shutil

    from fgnet_video.options import AnalyzeOptions
    from fgnet_video.study.plan import plan_jobs

    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(2):
        shutil.copy(shared_path("media", "vox_talking.mp4"), inputs / f"c{k}.mp4")
    options = AnalyzeOptions.from_kwargs(weights=str(weights), fps=5, detector=detector)
    return options, plan_jobs([str(inputs)], options, out_dir=tmp_path / "out")


# "SIGTERM stops any run within a few seconds" (README, Reliability promises), measured from
# the signal to the process's exit.
STOP_WITHIN_S = 5.0


def stopped_by_sigterm(args: list[str], working: Callable[[], bool], log: Path,
                       start_within_s: float = 120.0) -> tuple[int, float, str]:
    """Run `fgnet-video ARGS`, send SIGTERM once `working()` is true, and return (exit status,
    seconds from the signal to the exit, stderr)."""
    with open(log, "w") as err:  # not a pipe: workers must not keep it open
        process = subprocess.Popen([sys.executable, "-m", "fgnet_video", *args], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + start_within_s
    while not working():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the command never started working"
        time.sleep(0.05)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return process.returncode, time.monotonic() - signalled, log.read_text()


def metrics_records(run_dir: Path, event: str) -> list[dict]:
    """The records of one event type in a training run's metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


@pytest.fixture(scope="session")
def reference_checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """(model.pth, encoder.pt) in the release's formats, written by the reference script
    (seed 0, ~2.5 GB, ~20 s)."""
    script = shared_path("reference", "make_reference_checkpoints.py")
    out = tmp_path_factory.mktemp("reference_checkpoints")
    subprocess.run([sys.executable, str(script), str(out), "--seed", "0"], check=True)
    return out / "model.pth", out / "encoder.pt"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A converted file with random tiny-preset weights (bp4d AU set)."""
    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.model.config import TINY
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_converted(path, random_model(TINY, seed=0), "bp4d", BP4D_AUS, extra={"kind": "random"})
    return path


@pytest.fixture(scope="session")
def reference_converted(reference_checkpoints, tmp_path_factory) -> Path:
    """The reference checkpoints converted to one .safetensors file (bp4d AU set)."""
    from fgnet_video.weights.checkpoints import load_model, save_converted

    model_pth, encoder_pt = reference_checkpoints
    loaded = load_model(model_pth, psp=encoder_pt, dataset="bp4d")
    path = tmp_path_factory.mktemp("converted") / "bp4d.safetensors"
    save_converted(path, loaded.model, loaded.dataset, loaded.aus, loaded.metadata["sources"])
    return path
