"""What a new user sees from `analyze`: where the model runs, how long it will take, one
summary line at the end, and refusals that come before torch is even imported."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fgnet_video.analysis.eta import SUGGESTED_FPS, eta_line
from fgnet_video.cli import main

from .conftest import REPO, shared_path


def test_single_input_says_where_how_long_and_what_it_wrote(tiny_weights, tmp_path):
    video = shared_path("media", "vox_talking.mp4")
    out = tmp_path / "aus.csv"
    result = CliRunner().invoke(main, ["analyze", str(video), "-w", str(tiny_weights),
                                       "-o", str(out), "--overlay"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("fgnet-video: cpu, fp32, batch 16, reduced model (bp4d")
    assert lines[1].startswith("fgnet-video: vox_talking.mp4: about ")
    assert "for 118 frames at" in lines[1]
    assert lines[-1].startswith("118 rows (118 faces, 0 frames without a face) in ")
    assert lines[-1].endswith(f"-> {out}, {tmp_path / 'aus.overlay.mp4'}, "
                              f"{tmp_path / 'aus.json'}")


def test_eta_advises_sampling_for_long_cpu_runs():
    long_cpu = eta_line(90_000, 0.13, "cpu")
    assert long_cpu.startswith("about 192.3 h for 90000 frames at 0.13 faces/s")
    assert f"--fps {SUGGESTED_FPS}" in long_cpu
    assert "--fps" not in eta_line(90_000, 600.0, "cuda")
    assert eta_line(100, 50.0, "cpu") == ("about 2 s for 100 frames at 50 faces/s (one face "
                                          "per frame)")


def cli_in_a_fresh_process(*args: str) -> tuple[int, str, bool]:
    """(exit status, stderr, whether torch was imported) of the CLI run in a new process."""
    code = ("import sys\nfrom fgnet_video.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    status = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', status)\n")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    marker, status = done.stdout.split()[-2:]
    return int(status), done.stderr, marker == "TORCH"


def test_bad_command_lines_are_refused_before_torch_is_imported(tmp_path, tiny_weights):
    video = str(shared_path("media", "vox_talking.mp4"))
    for args, message in [
        (["analyze", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.csv")],
         "no such file"),
        (["analyze", video], "give either -o FILE"),
        (["analyze", video, "-o", video], "would replace the input"),
        (["analyze", video, "-o", str(tmp_path / "x.csv"), "--end", "nan"], "--end must be"),
    ]:
        status, err, torch_loaded = cli_in_a_fresh_process(*args, "-w", str(tiny_weights))
        assert status in (1, 2) and message in err, err
        assert not torch_loaded, args


def test_a_batch_with_nothing_to_do_loads_no_model(tmp_path, tiny_weights):
    video = shared_path("media", "vox_talking.mp4")
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["analyze", str(video), "--out-dir", str(out), "-w",
                                      str(tiny_weights), "--end", "0.2"])
    assert first.exit_code == 0, first.output
    status, err, torch_loaded = cli_in_a_fresh_process(
        "analyze", str(video), "--out-dir", str(out), "-w", str(tiny_weights), "--end", "0.2")
    assert status == 0 and "0 done, 1 skipped, 0 failed" in err, err
    assert not torch_loaded


def test_predict_refuses_a_missing_image_before_torch(tmp_path, tiny_weights):
    status, err, torch_loaded = cli_in_a_fresh_process(
        "predict", str(tmp_path / "missing.jpg"), "-w", str(tiny_weights))
    assert status == 1 and "missing.jpg: no such file" in err, err
    assert not torch_loaded
