"""What a new user sees from `analyze`: where the model runs, how long it will take, one
summary line at the end, and refusals that come before torch is even imported."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fgnet_video.analysis import eta
from fgnet_video.analysis.eta import SUGGESTED_FPS, TimeLeft, time_left_line
from fgnet_video.cli import main

from .conftest import REPO, shared_path


def test_single_input_says_where_how_long_and_what_it_wrote(tiny_weights, tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(eta, "ETA_AFTER_S", 0.0)  # the time left on the second report
    video = shared_path("media", "vox_talking.mp4")
    out = tmp_path / "aus.csv"
    result = CliRunner().invoke(main, ["analyze", str(video), "-w", str(tiny_weights),
                                       "-o", str(out), "--overlay"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("fgnet-video: cpu, fp32, batch 16, reduced model (bp4d")
    assert lines[1].startswith("fgnet-video: vox_talking.mp4: ")
    assert " left for " in lines[1] and " more of 118 frames at " in lines[1]
    assert lines[-1].startswith("118 rows (118 faces, 0 frames without a face) in ")
    assert lines[-1].endswith(f"-> {out}, {tmp_path / 'aus.overlay.mp4'}, "
                              f"{tmp_path / 'aus.json'}")
    assert len(lines) == 3


def test_the_time_left_counts_in_the_run_s_keyframe_periods(tiny_weights, tmp_path,
                                                            monkeypatch):
    periods = []

    class Recorded(TimeLeft):
        def __init__(self, total, device_type, period=1, **kwargs):
            periods.append(period)
            super().__init__(total, device_type, period, **kwargs)

    monkeypatch.setattr(eta, "TimeLeft", Recorded)
    result = CliRunner().invoke(main, ["analyze", str(shared_path("media", "vox_talking.mp4")),
                                       "-w", str(tiny_weights), "-o", str(tmp_path / "a.csv"),
                                       "--detect-every", "7", "--detector", "hog"])
    assert result.exit_code == 0, result.output
    assert periods == [7]


def test_a_short_run_gets_no_guess_of_its_time(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setattr(eta, "ETA_AFTER_S", 1e9)
    result = CliRunner().invoke(main, ["analyze", str(shared_path("media", "vox_talking.mp4")),
                                       "-w", str(tiny_weights), "-o", str(tmp_path / "a.csv")])
    assert result.exit_code == 0, result.output
    assert not [line for line in result.output.splitlines() if " left for " in line]


def test_time_left_is_said_once_the_rate_since_the_warm_up_settles():
    """The clock starts at the first report; the first window is a warm-up, left out; then
    the rate is all frames since the warm-up over all the time since, said once two
    consecutive rates agree, and never again. Windows that jump (model batches) do not
    hold it back."""
    now = [100.0]
    left = TimeLeft(1000, "cpu", clock=lambda: now[0])
    window = eta.ETA_AFTER_S
    assert left.update(16) is None  # the first report starts the clock
    now[0] += window / 2
    assert left.update(20) is None  # the warm-up is not over
    now[0] += window / 2
    assert left.update(26) is None  # the warm-up's end: 26 frames, left out
    now[0] += window
    assert left.update(66) is None  # 40 frames in one window: the first rate, 20/window
    now[0] += window
    line = left.update(76)  # a window of 10 only, but 50 frames in 2 windows: 25/window
    assert line == time_left_line(1000, 76, 50 / (2 * window), "cpu")
    now[0] += window
    assert left.update(200) is None  # said once


def test_the_rate_spans_a_keyframe_period_so_that_a_burst_is_not_taken_for_the_pace():
    """With the CNN on large frames a keyframe's detection holds the output up, then the
    frames tracked meanwhile come in a burst: rates over less than `period` frames since
    the warm-up are not taken (here two such would agree, at 4 times the real pace)."""
    now = [0.0]
    left = TimeLeft(1000, "cpu", period=10, clock=lambda: now[0])
    window = eta.ETA_AFTER_S
    left.update(3)
    now[0] += window
    assert left.update(6) is None  # the warm-up's end
    for frames in (9, 12):  # a burst: 3 frames a window, less than a period in all
        now[0] += window
        assert left.update(frames) is None
    now[0] += 4 * window  # the next keyframe's detection holds the frames up
    assert left.update(15) is None  # 9 frames: still under a period
    now[0] += window
    assert left.update(18) is None  # 12 frames in 7 windows: the first rate
    now[0] += window
    line = left.update(21)  # 15 in 8 windows: agrees
    assert line == time_left_line(1000, 21, 15 / (8 * window), "cpu")


def test_no_time_left_is_said_when_nothing_is_left():
    now = [0.0]
    left = TimeLeft(100, "cpu", clock=lambda: now[0])
    lines = []
    for frames in (10, 20, 60, 100):  # the run is done by the time the rates agree
        lines.append(left.update(frames))
        now[0] += eta.ETA_AFTER_S
    assert lines == [None] * 4
    assert time_left_line(100, 99, 10.0, "cpu").startswith("under 1 s left for 1 more")


def test_time_left_is_said_by_eta_latest_s_even_without_agreement():
    now = [0.0]
    left = TimeLeft(10**30, "cpu", clock=lambda: now[0])
    left.update(0)
    frames = 0
    line = None
    for step in range(1, 100):
        now[0] += eta.ETA_AFTER_S
        frames += 10 * 4**step  # the pace keeps quadrupling: no two rates agree
        line = left.update(frames)
        if line is not None:
            break
    assert line is not None and now[0] >= eta.ETA_LATEST_S and now[0] < eta.ETA_LATEST_S + \
        2 * eta.ETA_AFTER_S


def test_time_left_advises_sampling_for_long_cpu_runs():
    long_cpu = time_left_line(90_000, 0, 0.13, "cpu")
    assert long_cpu.startswith("about 192.3 h left for 90000 more of 90000 frames at 0.13 "
                               "frames/s")
    assert f"--fps {SUGGESTED_FPS}" in long_cpu
    assert "--fps" not in time_left_line(90_000, 0, 600.0, "cuda")
    assert time_left_line(None, 10, 5.0, "cpu") == "5 frames/s (the video's length is unknown)"


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
