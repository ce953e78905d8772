"""The prepared GPU check runs end to end on the CPU (--dry-run), so it cannot rot unseen."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import REPO, shared_path


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_whole_report(tmp_path):
    shared_path("reference")  # the real run reads it; the dry run must find the same layout
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    names = [step["name"] for step in report["steps"]]
    assert names == ["doctor", "parity and precision", "cuda tests", "model speed",
                     "face networks speed", "analyze single_720p", "analyze two_faces_720p",
                     "analyze study, one model", "training step",
                     "training step with auxiliary tasks", "torch.compile speed"]
    assert all(step["status"] == "ok" for step in report["steps"])
    two = next(s for s in report["steps"] if s["name"] == "analyze two_faces_720p")
    assert two["figures"]["faces_per_s"] > two["figures"]["frames_per_s"]  # two faces a frame
    study = next(s for s in report["steps"] if s["name"] == "analyze study, one model")
    assert "| 2 |" in study["output"] and "4 tables equal to --jobs 1's" in study["output"]
    faces = next(s for s in report["steps"] if s["name"] == "face networks speed")
    rows = [json.loads(line) for line in faces["output"].splitlines() if line.startswith("{")]
    assert [(r["dtype"], r["batch"]) for r in rows] == [("fp32", 2), ("tf32", 2), ("bf16", 2)]
    assert all(r["detector_first_pass_fps"] > 0 and r["descriptors_per_s"] > 0 for r in rows)
    # each held to dlib's own numbers (computed by dlib at --prepare, here for small frames)
    assert all(r["dlib_descriptor_l2_max"] < 1e-4 for r in rows[:2])
    assert rows[2]["dlib_descriptor_l2_max"] < 0.05 and rows[2]["extra_boxes"] == 0
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| parity and precision | ok |" in markdown and "dry_run: True" in markdown


def test_a_step_past_the_budget_is_recorded_as_skipped_not_run(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" /
                                                  "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    marker = tmp_path / "ran"
    command = ["python3", "-c", f"open({str(marker)!r}, 'w')"]
    skipped = gpu_check.run_step("late step", command, gpu_check.Budget(0).timeout(100))
    assert skipped["status"] == "skipped (out of budget)" and not marker.exists()
    done = gpu_check.run_step("step", command, gpu_check.Budget(None).timeout(100))
    assert done["status"] == "ok" and marker.exists()
