"""A study on a Ray cluster (`analyze --out-dir DIR --ray`): the tables of a local run,
retries after a killed worker, signals, and one-line errors. A local cluster of 2 CPUs serves
the module; its workers import this checkout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.options import AnalyzeOptions
from fgnet_video.study.jobs import JobOutcome
from fgnet_video.study.plan import plan_jobs
from fgnet_video.study.run import analyze_inputs

from .conftest import REPO, shared_path

ray = pytest.importorskip("ray")

from fgnet_video.study import ray_cluster  # noqa: E402 - after the skip

FPS = 5  # 5 to 24 frames per recording
# The tables of a Ray run (workers with one torch thread) equal a local run's byte for byte
# with HOG; the CNN's confidences on a CPU differ in the last digits with the thread count.
HOG = "hog"


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray cluster (2 CPUs) for this module, connected; its GCS address. This
    process's SIGTERM handler is put back at once, its environment (which ray.init sets
    for its clients) at the end."""
    environment, sigterm = dict(os.environ), signal.getsignal(signal.SIGTERM)
    os.environ["PYTHONPATH"] = os.pathsep.join(  # the raylet's, so every worker's, path
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    signal.signal(signal.SIGTERM, sigterm)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture(scope="module")
def study() -> list[str]:
    """Three short real recordings and one missing input."""
    return [str(REPO / "sample_videos" / "astronaut.mp4"),
            str(shared_path("media", "vox_talking.mp4")),
            str(shared_path("media", "sample_disfa.avi")), "/nonexistent/gone.mp4"]


@pytest.fixture(scope="module")
def local_run(study, tiny_weights, tmp_path_factory):
    """(summary, out dir) of the study analysed locally, one recording after another."""
    out = tmp_path_factory.mktemp("local")
    summary = analyze_inputs(study, AnalyzeOptions.from_kwargs(fps=FPS, weights=str(tiny_weights),
                                                                  detector=HOG),
                             out_dir=out)
    assert len(summary.done) == 3
    return summary, out


def same_summary(summary, reference) -> None:
    assert sorted(summary.done) == sorted(reference.done)
    assert summary.skipped == reference.skipped == []
    assert summary.failed == reference.failed
    assert summary.failed[0][1] == "/nonexistent/gone.mp4: no such file"


def same_tables(out: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.glob("*.csv"))
    assert names == sorted(p.name for p in out.glob("*.csv")) and len(names) == 3
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_study_on_ray_writes_the_tables_of_a_local_run(cluster, study, local_run, tiny_weights,
                                                         tmp_path, monkeypatch):
    # weights by their known name, in a cache only the driver is told about
    home = tmp_path / "cache"
    home.mkdir()
    (home / "bp4d.safetensors").write_bytes(tiny_weights.read_bytes())
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(home))
    out = tmp_path / "out"
    options = AnalyzeOptions.from_kwargs(fps=FPS, weights="bp4d", ray="", detector=HOG)
    ended = []
    summary = analyze_inputs(study, options, out_dir=out,
                             on_end=lambda job, outcome: ended.append((str(job.source),
                                                                       outcome.status)))
    reference, reference_out = local_run
    same_summary(summary, reference)
    same_tables(out, reference_out)
    assert sorted(ended) == sorted([(s, "done") for s in study[:3]]
                                   + [(study[3], "failed")])
    sidecar = (out / "astronaut.json").read_text()
    assert str(home / "bp4d.safetensors") in sidecar  # the workers read the driver's cache
    assert not list(out.glob(".*"))
    again = analyze_inputs(study, options, out_dir=out)  # complete: settled without Ray
    assert sorted(again.skipped) == sorted(study[:3]) and not again.done


def test_a_killed_worker_is_retried_from_a_clean_state(cluster, study, local_run, tiny_weights,
                                                       tmp_path):
    out = tmp_path / "out"
    killed: list[int] = []
    stop = threading.Event()

    def kill_the_first_worker() -> None:
        """SIGKILL the worker writing astronaut's table, once its partial is there."""
        while not stop.is_set():
            for partial in out.glob(".astronaut.partial-*.csv"):
                pid = int(re.search(r"\.partial-(\d+)", partial.name)[1])  # PID@HOST
                assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_job")
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_the_first_worker)
    watcher.start()
    try:
        summary = analyze_inputs(study, AnalyzeOptions.from_kwargs(
            fps=FPS, weights=str(tiny_weights), ray="", detector=HOG), out_dir=out)
    finally:
        stop.set()
        watcher.join()
    assert len(killed) == 1 and not Path(f"/proc/{killed[0]}").exists()
    reference, reference_out = local_run
    same_summary(summary, reference)  # astronaut done, by the retry
    same_tables(out, reference_out)
    assert not list(out.glob(".*"))  # the killed worker's partial was removed


def test_the_cli_on_a_ray_cluster_prints_each_input_and_the_summary(cluster, study,
                                                                    tiny_weights, tmp_path):
    inputs = study[:2]
    result = subprocess.run(
        [sys.executable, "-m", "fgnet_video", "analyze", *inputs, "--out-dir",
         str(tmp_path / "out"), "-w", str(tiny_weights), "--fps", str(FPS), "--ray", cluster],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert sorted(line for line in lines if line.startswith("done ")) == sorted(
        f"done    {source}" for source in inputs)
    assert "2 done, 0 skipped, 0 failed" in lines
    assert "Traceback" not in result.stderr


def test_sigterm_cancels_the_tasks_and_the_next_run_cleans_up(cluster, study, tiny_weights,
                                                              tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fgnet_video", "analyze", study[0], "--out-dir", str(out),
               "-w", str(tiny_weights), "--ray", cluster]  # every frame: about 4 s of work
    driver = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (partials := list(out.glob(".astronaut.partial-*.csv"))):
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        driver.send_signal(signal.SIGTERM)
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 143, err
    assert "fgnet-video: stopped (SIGTERM)" in err.splitlines()
    worker = Path(f"/proc/{partials[0].name.split('-')[-1].removesuffix('.csv')}")
    deadline = time.monotonic() + 30
    while worker.exists():  # the task was cancelled by force: its worker is killed
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not (out / "astronaut.json").exists()
    summary = analyze_inputs([study[0]], AnalyzeOptions.from_kwargs(
        fps=FPS, weights=str(tiny_weights), ray="", detector=HOG), out_dir=out)
    assert summary.done == [study[0]]
    assert not list(out.glob(".*"))


def test_a_model_a_worker_cannot_load_stops_the_run_with_one_line(cluster, study, tmp_path):
    broken = tmp_path / "broken.safetensors"  # a file: the driver's check passes
    broken.write_bytes(b"not safetensors" * 100)
    with pytest.raises(ray_cluster.FatalError) as caught:
        analyze_inputs(study[:2], AnalyzeOptions.from_kwargs(weights=str(broken), ray=""),
                       out_dir=tmp_path / "out")
    message = str(caught.value)
    assert message.startswith("on a Ray worker: ") and "\n" not in message


def test_what_escapes_a_task_is_a_failed_input_with_one_line(cluster, tmp_path):
    out = tmp_path / "out"
    plan = plan_jobs(["a.mp4", "b.mp4"], AnalyzeOptions(), out_dir=out)

    def escape() -> None:
        raise ValueError("boom\nmore")

    def die() -> None:
        os._exit(1)

    raised = ray.remote(max_retries=0)(escape).remote()
    outcome = ray_cluster._outcome(ray, raised, plan.jobs[0], plan)
    assert outcome == JobOutcome("failed", reason="ValueError: boom")
    assert "ValueError: boom" in (out / "a.failed.json").read_text()
    crashed = ray.remote(max_retries=0)(die).remote()
    outcome = ray_cluster._outcome(ray, crashed, plan.jobs[1], plan)
    assert outcome.status == "failed" and outcome.reason.startswith("Ray gave up on the task: ")
    assert "\n" not in outcome.reason


def test_the_model_is_loaded_once_per_worker_process(tiny_weights):
    kwargs = AnalyzeOptions.from_kwargs(weights=str(tiny_weights)).model.engine_kwargs()
    first = ray_cluster._engine(kwargs)
    assert ray_cluster._engine(dict(kwargs)) is first
    other = ray_cluster._engine({**kwargs, "batch_size": 2})
    assert other is not first and other.batch_size == 2 and len(ray_cluster._engines) == 1
    ray_cluster._engines.clear()


def test_tasks_ask_for_the_device_and_cpus_they_use():
    cpu_node, gpu_node = {"CPU": 8.0}, {"CPU": 8.0, "GPU": 2.0}
    assert ray_cluster.task_device("auto", [cpu_node]) == "cpu"
    assert ray_cluster.task_device("auto", [cpu_node, gpu_node]) == "cuda"
    assert ray_cluster.task_device("cuda:1", [gpu_node]) == "cuda"
    # the GPU a task was given, as torch numbers the node's visible GPUs
    assert ray_cluster.task_gpu([2], visible="") == "cuda:2"
    assert ray_cluster.task_gpu(["5"], visible="4,5,6") == "cuda:1"
    with pytest.raises(UserError, match="2 GPUs instead of one"):
        ray_cluster.task_gpu([0, 1], visible="")
    with pytest.raises(UserError, match="unknown device"):
        ray_cluster.task_device("tpu", [gpu_node])

    def resources(nodes, **options):
        settings = AnalyzeOptions.from_kwargs(**options)
        return ray_cluster.task_resources(ray_cluster._task_options(settings, nodes), nodes)

    assert resources([cpu_node]) == {"num_cpus": 1, "num_gpus": 0}
    assert resources([gpu_node], face_workers=3) == {"num_cpus": 3, "num_gpus": 1}
    assert resources([gpu_node], device="cpu") == {"num_cpus": 1, "num_gpus": 0}
    with pytest.raises(UserError, match="no node of the Ray cluster has the 1 CPU"):
        resources([cpu_node], device="cuda")
    with pytest.raises(UserError, match="has the 16 CPU"):
        resources([gpu_node], face_workers=16)


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(main, ["analyze", str(REPO / "sample_videos" / "astronaut.mp4"),
                                       "--out-dir", str(tmp_path), "--ray"])
    assert result.exit_code == 1
    assert result.output == ("fgnet-video: error: --ray needs Ray, which is not installed: "
                             "pip install 'fgnet-video[ray]'\n")


@pytest.mark.parametrize("args, line", [
    (["-o", "aus.csv", "--ray"], "--ray runs a study into --out-dir DIR, not one input into "
                                 "-o FILE"),
    (["--out-dir", "out", "--jobs", "2", "--ray", "auto"], "--jobs goes without --ray: on Ray "
     "every recording is a task, and the cluster's CPUs and GPUs set how many run at once"),
    (["--ray", str(REPO / "sample_videos"), "--out-dir", "out"],
     f"--ray {REPO / 'sample_videos'}: that is a file or folder, not a Ray address (give a "
     "bare --ray after the inputs)"),
])
def test_ray_refuses_what_it_cannot_do_in_one_line(args, line, tmp_path):
    with CliRunner().isolated_filesystem(temp_dir=tmp_path):
        result = CliRunner().invoke(main, ["analyze", str(REPO / "sample_videos" /
                                                          "astronaut.mp4"), *args])
        assert result.exit_code == 1
        assert result.output == f"fgnet-video: error: {line}\n"
        assert not os.listdir(".")
