"""Nothing lost, nothing escapes: outputs are planned and checked before any work, a
recording's outputs are one unit, partials of dead runs are cleaned, signals stop workers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from fgnet_video.analysis.commit import OutputUnit, remove_stale_partials
from fgnet_video.analysis.sidecar import OutputPaths
from fgnet_video.cli import main

from .conftest import REPO, STOP_WITHIN_S, shared_path, stopped_by_sigterm

SHORT = ["--end", "0.4"]  # 10 frames of the vox clip


def run(*args: str):
    return CliRunner().invoke(main, ["analyze", *args])


@pytest.fixture
def clip(tmp_path) -> Path:
    """A copy of the vox clip in tmp_path (inputs a test may see replaced)."""
    copy = tmp_path / "in.mp4"
    copy.write_bytes(shared_path("media", "vox_talking.mp4").read_bytes())
    return copy


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- 1, 2: outputs are planned and checked before any work ---------------------------------------

@pytest.mark.parametrize("args", [
    ["-o", "{clip}"],                                   # the table would replace the video
    ["-o", "{tmp}/out.csv", "--overlay", "{clip}"],      # the overlay would replace it
    ["-o", "{tmp}/aus.json"],                           # the sidecar would replace the table
    ["-o", "{tmp}/out.csv", "--overlay", "{tmp}/out.csv"],
    ["-o", "{tmp}/hard.csv"],                           # a hard link of the input
])
def test_an_output_that_would_replace_an_input_or_output_is_refused(args, clip, tmp_path,
                                                                    tiny_weights):
    os.link(clip, tmp_path / "hard.csv")
    before = snapshot(tmp_path)
    result = run(str(clip), "-w", str(tiny_weights),
                 *[a.format(clip=clip, tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert "would replace" in result.output or "two outputs" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_a_video_named_like_the_sidecar_is_not_replaced(clip, tmp_path, tiny_weights):
    video = clip.rename(tmp_path / "clip.json")
    result = run(str(video), "-w", str(tiny_weights), "-o", str(tmp_path / "clip.csv"))
    assert result.exit_code == 2 and "would replace the input" in result.output
    assert video.read_bytes()[:4] != b"fram"


@pytest.mark.parametrize("target", ["/dev/null", "link"])
def test_outputs_are_never_devices_or_links(target, clip, tmp_path, tiny_weights):
    if target == "link":
        link = tmp_path / "link.csv"
        link.symlink_to("/proc/self/fd/1")
        target = str(link)
    result = run(str(clip), "-w", str(tiny_weights), "-o", target)
    assert result.exit_code == 2, result.output
    assert "is a link" in result.output or "not a regular file" in result.output
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("name", ["../../escaped_out", "/tmp/fgnet_escaped_abs"])
def test_manifest_names_cannot_leave_the_output_folder(name, clip, tmp_path, tiny_weights):
    manifest = tmp_path / "study.csv"
    manifest.write_text(f"path,name\n{clip},{name}\n")
    out = tmp_path / "deep" / "er" / "out"
    result = run(str(manifest), "--out-dir", str(out), "-w", str(tiny_weights))
    assert result.exit_code == 2 and "outside --out-dir" in result.output, result.output
    assert not out.exists() and not list(tmp_path.glob("**/escaped_out*"))
    assert not Path("/tmp/fgnet_escaped_abs.csv").exists()


# -- 3: a recording's outputs are one unit --------------------------------------------------------

def finished_run(clip: Path, tmp_path: Path, tiny_weights: Path) -> tuple[Path, dict]:
    out = tmp_path / "out.csv"
    result = run(str(clip), "-w", str(tiny_weights), "-o", str(out), *SHORT)
    assert result.exit_code == 0, result.output
    return out, snapshot(tmp_path)


def test_a_failed_overlay_costs_neither_the_table_nor_leaves_a_partial(clip, tmp_path,
                                                                       tiny_weights,
                                                                       monkeypatch):
    out, before = finished_run(clip, tmp_path, tiny_weights)

    def broken_finish(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fgnet_video.analysis.overlay.OverlayWriter.finish", broken_finish)
    result = run(str(clip), "-w", str(tiny_weights), "-o", str(out), "--overwrite",
                 "--overlay", "--fps", "5", *SHORT)
    # the table never depends on the overlay: the new table and sidecar replace
    # the old ones, the sidecar says the overlay failed, and no overlay or partial is left
    assert result.exit_code == 0 and "No space left" in result.output
    after = snapshot(tmp_path)
    assert sorted(after) == sorted(before) and after["out.csv"] != before["out.csv"]
    assert "No space left" in json.loads(after["out.json"])["outputs"]["overlay"]["failed"]


def test_a_failed_sidecar_write_leaves_no_final_table(clip, tmp_path, tiny_weights,
                                                     monkeypatch):
    def full_disk(path, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fgnet_video.analysis.recording.write_json", full_disk)
    result = run(str(clip), "-w", str(tiny_weights), "-o", str(tmp_path / "out.csv"), *SHORT)
    assert result.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_commit_that_fails_midway_rolls_back(tmp_path, monkeypatch):
    finals = [tmp_path / "t.csv", tmp_path / "t.overlay.mp4", tmp_path / "t.json"]
    for path in finals:
        path.write_text(f"old {path.name}")
    unit = OutputUnit(finals)
    for path in finals:
        unit.partial(path).write_text(f"new {path.name}")
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src) == unit.partial(finals[-1]):  # the sidecar's own rename fails
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        unit.commit()
    monkeypatch.setattr(os, "replace", real_replace)
    assert [p.read_text() for p in finals] == [f"old {p.name}" for p in finals]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in finals)


def test_complete_means_the_sidecar_matches_the_table_beside_it(clip, tmp_path, tiny_weights):
    out, _ = finished_run(clip, tmp_path, tiny_weights)
    paths = OutputPaths.for_table(out)
    assert paths.complete()
    recorded = json.loads(paths.sidecar.read_text())["outputs"]["table"]
    assert recorded["name"] == "out.csv" and recorded["bytes"] == out.stat().st_size
    table = pd.read_csv(out)
    table.iloc[:5].to_csv(out, index=False)  # a table from another run
    assert not paths.complete()
    result = run(str(clip), "-w", str(tiny_weights), "-o", str(out), *SHORT)
    assert result.exit_code == 0 and "skipped" not in result.output
    assert len(pd.read_csv(out)) == len(table) and paths.complete()
    assert not OutputPaths.for_table(out, overlay=True).complete()  # no overlay recorded


# -- 4: partials of dead runs are cleaned ---------------------------------------------------------

def test_partials_of_dead_processes_are_removed_and_live_ones_kept(clip, tmp_path, tiny_weights):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live = os.getppid()
    stale = [tmp_path / f".out.partial-{dead}.csv", tmp_path / f".out.backup-{dead}.json",
             tmp_path / f"..out.overlay.partial-{dead}.partial-{dead}.mp4"]
    kept = [tmp_path / f".out.partial-{live}.csv", tmp_path / f".output.partial-{dead}.csv"]
    for path in stale + kept:
        path.write_bytes(b"")
    finals = OutputPaths.for_table(tmp_path / "out.csv", overlay=True).finals()
    assert sorted(remove_stale_partials(finals)) == sorted(stale)
    assert all(p.exists() for p in kept)
    (tmp_path / f".out.failed.partial-{dead}.json").write_bytes(b"")  # a failure record's
    result = run(str(clip), "-w", str(tiny_weights), "-o", str(tmp_path / "out.csv"), *SHORT)
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.mp4", "out.csv", "out.json"] + [p.name for p in kept])


def test_partials_on_shared_storage_are_judged_by_their_host(tmp_path):
    """Ours (this host) go when their process is gone; another machine's only when older
    than STALE_PARTIAL_S, since its process cannot be checked from here."""
    from fgnet_video.analysis.commit import STALE_PARTIAL_S
    from fgnet_video.atomic import host_tag, owner_tag, temporary_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    here = host_tag()
    assert temporary_name(tmp_path / "out.csv").name == f".out.partial-{owner_tag()}.csv"
    ours_dead = tmp_path / f".out.partial-{dead}@{here}.csv"
    ours_live = tmp_path / f".out.partial-{os.getpid()}@{here}.csv"
    theirs_fresh = tmp_path / f".out.partial-{dead}@another-node_7.csv"
    theirs_old = tmp_path / f".out.backup-{dead}@another-node_7.json"
    for path in (ours_dead, ours_live, theirs_fresh, theirs_old):
        path.write_bytes(b"")
    old = time.time() - STALE_PARTIAL_S - 60
    os.utime(theirs_old, (old, old))
    finals = OutputPaths.for_table(tmp_path / "out.csv").finals()
    assert sorted(remove_stale_partials(finals)) == sorted([ours_dead, theirs_old])
    assert ours_live.exists() and theirs_fresh.exists()


# -- 8: odd option values -------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--fps", "inf"], "--fps must be a positive number"),
    (["--start", "nan"], "--start must be a number of seconds"),
    (["--end", "nan"], "--end must be a number of seconds"),
])
def test_non_finite_option_values_are_refused(args, message, clip, tmp_path, tiny_weights):
    result = run(str(clip), "-w", str(tiny_weights), "-o", str(tmp_path / "o.csv"), *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("args", [["--start", "100"], ["--end", "0"]])
def test_a_selection_without_frames_writes_a_header_only_table(args, clip, tmp_path,
                                                              tiny_weights):
    out = tmp_path / "o.csv"
    result = run(str(clip), "-w", str(tiny_weights), "-o", str(out), *args)
    assert result.exit_code == 0, result.output
    assert "no frame in the selected span" in result.output
    table = pd.read_csv(out)
    assert len(table) == 0 and table.columns[:6].tolist() == ["frame", "timestamp", "face_id",
                                                               "person_id", "person", "success"]
    assert json.loads(out.with_suffix(".json").read_text())["stats"]["frames"] == 0


# -- 3 (signals), 5, 6: parallel workers ----------------------------------------------------------

def study(tmp_path: Path, clip: Path, n: int) -> list[str]:
    inputs = []
    for k in range(n):
        copy = tmp_path / f"rec{k}.mp4"
        copy.write_bytes(clip.read_bytes())
        inputs.append(str(copy))
    return inputs


def test_parallel_model_errors_are_one_line_once(clip, tmp_path):
    inputs = study(tmp_path, clip, 3)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all" * 10)
    for extra in (["-w", str(bad)], ["-w", "nosuchfile.safetensors"]):
        result = run(*inputs, "--out-dir", str(tmp_path / "o"), "--jobs", "2", *extra)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output, result.output


def test_parallel_cuda_on_a_cpu_machine_is_one_line(clip, tmp_path, tiny_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    inputs = study(tmp_path, clip, 2)
    result = run(*inputs, "--out-dir", str(tmp_path / "o"), "--jobs", "2", "-w",
                 str(tiny_weights), "--device", "cuda")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "fgnet-video: error: --device cuda: no CUDA GPU is available to this torch build"]


def interruptible() -> None:
    """In a child about to start: SIGINT as a terminal would send it, even when this test run
    was started in the background (where a shell starts commands with SIGINT ignored, and a
    Python started so never turns it into KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def children(pid: int) -> list[int]:
    """Worker processes (spawned by multiprocessing) whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_study(tmp_path: Path, clip: Path, tiny_weights: Path) -> tuple[subprocess.Popen,
                                                                          Path, list[int]]:
    inputs = study(tmp_path, clip, 6)
    out = tmp_path / "out"
    log = open(tmp_path / "stderr.txt", "w")  # not a pipe: workers must not keep it open
    process = subprocess.Popen(
        [sys.executable, "-m", "fgnet_video", "analyze", *inputs, "--out-dir", str(out),
         "--jobs", "2", "-w", str(tiny_weights), "--detector", "hog"], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=log, text=True, preexec_fn=interruptible)
    log.close()
    deadline = time.monotonic() + 120
    while not list(out.glob(".*partial-*")):  # the workers are writing
        assert process.poll() is None, (tmp_path / "stderr.txt").read_text()
        assert time.monotonic() < deadline, "the workers never started writing"
        time.sleep(0.05)
    return process, out, children(process.pid)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_workers_and_the_queue(signum, code, clip, tmp_path, tiny_weights):
    process, out, workers = start_study(tmp_path, clip, tiny_weights)
    assert len(workers) == 2
    process.send_signal(signum)
    process.wait(timeout=30)
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == code, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)
    assert len(list(out.glob("*.json"))) < 6  # the queue was not worked through
    assert not list(out.glob(".*partial-*")) and not list(out.glob(".*backup-*"))


@pytest.mark.slow
def test_a_killed_parent_takes_its_workers_with_it(clip, tmp_path, tiny_weights):
    process, out, workers = start_study(tmp_path, clip, tiny_weights)
    assert len(workers) == 2
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)
    assert not list(out.glob(".*partial-*"))  # the workers removed theirs as they stopped


def test_predict_never_writes_over_its_images_or_weights(tmp_path, tiny_weights):
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(face)
    before = face.read_bytes()
    for args in (["-o", str(face)], ["--save-heatmaps", str(face)],
                 ["-o", str(tiny_weights)], ["-o", str(tmp_path / "a.csv"),
                                             "--save-heatmaps", str(tmp_path / "a.csv")]):
        result = CliRunner().invoke(main, ["predict", str(face), "--aligned", "-w",
                                           str(tiny_weights), *args])
        assert result.exit_code == 2, result.output
        assert "would replace" in result.output or "two outputs" in result.output
    assert face.read_bytes() == before


@pytest.mark.slow
def test_a_killed_worker_fails_its_recording_and_the_study_goes_on(clip, tmp_path, tiny_weights):
    process, out, workers = start_study(tmp_path, clip, tiny_weights)
    assert len(workers) == 2
    # the writer of a partial has started its recording (the other may not have yet, and a
    # worker lost before starting only gives its recording back to the queue)
    writer = int(re.search(r"\.partial-(\d+)", next(out.glob(".*partial-*")).name)[1])
    assert writer in workers
    os.kill(writer, signal.SIGKILL)  # as the OOM killer would
    process.wait(timeout=180)
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 1, err
    assert "Traceback" not in err
    failed_lines = [line for line in err.splitlines() if line.startswith("failed  ")]
    assert len(failed_lines) == 1 and "the worker process stopped (killed by SIGKILL" in err
    assert "5 done, 0 skipped, 1 failed" in err
    assert len(list(out.glob("*.failed.json"))) == 1  # for `fgnet-video status`
    assert not list(out.glob(".*partial-*"))  # the dead worker's, removed when it was lost
    inputs = [str(tmp_path / f"rec{k}.mp4") for k in range(6)]
    again = run(*inputs, "--out-dir", str(out), "--jobs", "2", "-w", str(tiny_weights),
                "--detector", "hog")  # HOG: the redone table is byte-identical
    assert again.exit_code == 0, again.output
    assert "1 done, 5 skipped, 0 failed" in again.output
    assert not list(out.glob(".*partial-*")) and not list(out.glob("*.failed.json"))
    tables = {p.read_bytes() for p in out.glob("*.csv")}
    assert len(list(out.glob("*.csv"))) == 6 and len(tables) == 1


def _any(folder: Path, pattern: str) -> Callable[[], bool]:
    return lambda: any(folder.rglob(pattern))


def _after(seconds: float) -> Callable[[], bool]:
    """True `seconds` after its first call (made as the command starts)."""
    since: list[float] = []

    def working() -> bool:
        since[:] = since or [time.monotonic()]
        return time.monotonic() - since[0] >= seconds

    return working


def _labelled_frames(root: Path, n: int) -> Path:
    """A BP4D-layout data folder: n aligned frames, each in the test list of folds 0-2."""
    import numpy as np
    from PIL import Image

    from fgnet_video.aus import BP4D_AUS
    from fgnet_video.train.data import landmark_file

    paths = []
    for i in range(n):
        path = f"BP4D/aligned_images/{i:03d}.png"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), i % 256, np.uint8)).save(root / path)
        landmarks = landmark_file(root / path)
        landmarks.parent.mkdir(parents=True, exist_ok=True)
        np.save(landmarks, np.full((68, 2), 128.0))
        paths.append(path)
    header = "image_path," + ",".join(f"au{a}" for a in BP4D_AUS)
    rows = [header] + [path + "," + ",".join("1" for _ in BP4D_AUS) for path in paths]
    for fold in range(3):
        folder = root / "BP4D" / "labels" / str(fold)
        folder.mkdir(parents=True)
        (folder / "test.csv").write_text("\n".join(rows) + "\n")
    return root


def _copies(path: Path, folder: Path, n: int) -> list[str]:
    """n copies of `path` in `folder`, named copy0, copy1, ..."""
    folder.mkdir()
    for k in range(n):
        shutil.copy(path, folder / f"copy{k}{path.suffix}")
    return [str(folder / f"copy{k}{path.suffix}") for k in range(n)]


def _delayed(folder: Path, seconds: float) -> Callable[[], bool]:
    """True `seconds` after a partial first appeared in `folder` (the work is under way)."""
    since: list[float] = []

    def working() -> bool:
        if not since and any(folder.rglob(".*partial-*")):
            since.append(time.monotonic())
        return bool(since) and time.monotonic() - since[0] >= seconds

    return working


@pytest.mark.slow
@pytest.mark.parametrize("command", ["analyze", "small faces", "study", "cnn study",
                                     "preprocess", "evaluate"])
def test_sigterm_stops_each_long_command_within_seconds(command, clip, tmp_path, tiny_weights):
    """SIGTERM while the command works: exit 143 within STOP_WITHIN_S, one line, no partial
    file left (workers included). "small faces": the CNN's search of a 720p crowd with
    --min-face 20, a 5120x2880 small-face pass of tens of seconds on a CPU, is given up;
    "cnn study": the same search, by the main process of a study (--jobs 2) for its
    workers."""
    out = tmp_path / "out"
    inputs = study(tmp_path, clip, 6)
    crowd = REPO / "benchmarks" / "real_footage" / "walk_opera.mp4"
    args, working = {
        "analyze": (["analyze", inputs[0], "-o", str(out / "x.csv"), "-w", str(tiny_weights),
                     "--overlay", str(out / "x.mp4")], _any(out, ".*partial-*")),
        "small faces": (["analyze", str(crowd), "-o", str(out / "x.csv"), "-w",
                         str(tiny_weights), "--min-face", "20"], _delayed(out, 2.0)),
        "study": (["analyze", *inputs, "--out-dir", str(out), "-w", str(tiny_weights),
                   "--face-workers", "2"], _any(out, ".*partial-*")),
        "cnn study": (["analyze", str(crowd), *_copies(crowd, tmp_path / "crowds", 1),
                       "--out-dir", str(out), "-w", str(tiny_weights), "--min-face", "20",
                       "--detector", "cnn", "--jobs", "2"], _delayed(out, 4.0)),
        "preprocess": (["preprocess", *inputs, "-o", str(out), "-j", "2"],
                       _any(out, "*.jpg")),
        "evaluate": (["evaluate", "--weights", str(tiny_weights), "--dataset", "bp4d",
                      "--data", str(_labelled_frames(tmp_path / "data", 400)), "--all-folds",
                      "--device", "cpu", "--num-workers", "2", "--json",
                      str(out / "scores.json")], _after(6.0)),
    }[command]
    code, seconds, err = stopped_by_sigterm(args, working, tmp_path / "stderr.txt")
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "fgnet-video: stopped (SIGTERM)", err
    assert seconds < STOP_WITHIN_S, f"stopped {seconds:.1f} s after SIGTERM"
    assert not list(out.rglob(".*partial*")) and not list(out.rglob(".*backup-*"))
