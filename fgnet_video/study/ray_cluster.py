"""A study on a Ray cluster: `fgnet-video analyze INPUTS --out-dir DIR --ray [ADDRESS]`.

`fgnet_video.study.run.analyze_inputs` settles first what needs no model (a missing input
fails, an input with complete outputs is skipped); `run_on_ray` then runs every remaining
recording (a `plan.Job`) as one Ray task and reports each outcome as its task ends
(`on_end`), so a run on Ray prints the same lines, summary and exit status as a local run.

Connection: ADDRESS is what `ray.init(address=...)` takes (`auto`, `HOST:6379`,
`ray://HOST:10001`); '' (a bare `--ray`) is `ray.init()`'s default: the cluster in
RAY_ADDRESS or one started on this machine with `ray start`, else a new local one (shut down
at the end). A process that is already connected (`ray.is_initialized()`, e.g. a Python
session) keeps its connection and the address is not used.

A task (`run_job`) runs `fgnet_video.study.jobs.process_job` on its worker process's model,
loaded by the process's first task and reused by the later ones (`_engine`, keyed by the
engine options). It works in the driver's working folder, so relative paths mean what they
meant there; the weights come from the driver's cache (FGNET_VIDEO_HOME is passed on), where
the driver put them before any task starts (`check_model_options`), and workers never
download (offline). A worker that cannot load the model stops the run with one line
(`FatalError`). Inputs, outputs, the weights cache and the working folder must be at
the same paths on every node (shared storage), and fgnet-video installed on every node.

Resources of a task: one GPU when the model runs on CUDA (`--device cuda` or `cuda:N`, whose
index is replaced by the GPU Ray assigns; `auto` on a cluster with a GPU), else none. Ray
is told not to set CUDA_VISIBLE_DEVICES (a worker process it reuses for a task on another
GPU would stay on the GPU its CUDA started on): the task runs on `cuda:K` for the GPU it
was given (`task_gpu`), reusing the process's model when that is the same GPU; CPUs:
the face detection processes (`--face-workers N`; on Ray `auto` means 1), which also sets its
torch threads (Ray's OMP_NUM_THREADS). So a CPU-only node runs one recording per core at once.

Failures: a task whose worker process or node dies is run again, up to TASK_RETRIES times;
the retry starts clean (`analyze_to_files` removes the partials a dead process left, and an
input's outputs are committed together, so nothing half-written counts as done). A task
that still fails, or an exception that escapes a task, is that input's 'failed' outcome
(one line, also kept beside its outputs for `fgnet-video status`); the others go on. A
finished task's result is small and held by the driver, so losing a node never reruns it.

Signals: SIGINT and SIGTERM in the driver cancel the unfinished tasks (force: their worker
processes are killed) and are raised on; the partials of the killed tasks are removed when
a later run reaches their inputs.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fgnet_video.cache import HOME_ENV, cache_dir
from fgnet_video.errors import UserError, error_line, warnings_as_lines, warnings_shown_as_lines
from fgnet_video.options import AnalyzeOptions
from fgnet_video.study.jobs import JobOutcome, OnEnd, StudySummary, failed, process_job
from fgnet_video.study.plan import Job, Plan

if TYPE_CHECKING:
    from fgnet_video.inference.engine import InferenceEngine

log = logging.getLogger(__name__)

TASK_RETRIES = 3  # reruns of a task whose worker process or node died
# Ray leaves CUDA_VISIBLE_DEVICES alone (it would set it per task, but a reused worker process
# keeps the GPU its CUDA started on); each task picks its assigned GPU itself (`task_gpu`)
NO_CUDA_VISIBLE_DEVICES = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"
POLL_SECONDS = 0.2  # how often the driver looks for finished tasks
INSTALL_HINT = "pip install 'fgnet-video[ray]'"



class FatalError(UserError):
    """The run cannot go on for any input (a worker cannot load the model)."""


def check_model_options(options: AnalyzeOptions) -> None:
    """Refuse an unusable device and fetch (or refuse) the weights once, in the driver,
    before any task starts (workers then find the weights in the cache)."""
    from fgnet_video.inference.devices import resolve_device
    from fgnet_video.weights.store import resolve_weights

    model = options.model
    resolve_device(model.device)
    resolve_weights(model.weights, psp=model.psp, offline=model.offline)


def require_ray(single_output: bool = False) -> Any:
    """The `ray` module for a --ray run; a UserError (one line) when the run writes a single
    output (-o: Ray runs studies, into --out-dir) or when Ray is not installed."""
    if single_output:
        raise UserError("--ray runs a study into --out-dir DIR, not one input into -o FILE")
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def run_on_ray(plan: Plan, on_end: OnEnd) -> StudySummary:
    """Run every job of `plan` as a Ray task (module docstring) on the cluster of
    `plan.options.ray`, calling `on_end(job, outcome)` as each one ends."""
    ray = require_ray(any(job.paths is not None for job in plan.jobs))
    options = plan.options
    with _connected(ray, options.ray):
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        task_options = _task_options(options, nodes)
        resources = task_resources(task_options, nodes)
        # the weights into the cache, here (the device was checked against the cluster)
        check_model_options(replace(options, model=replace(options.model, device="cpu")))
        task = ray.remote(run_job).options(**resources, max_retries=TASK_RETRIES,
                                           retry_exceptions=False,
                                           runtime_env={"env_vars": {
                                               HOME_ENV: str(cache_dir()),
                                               NO_CUDA_VISIBLE_DEVICES: "1"}})
        shared = ray.put(replace(plan, options=task_options))
        folder, warning_lines = os.getcwd(), warnings_shown_as_lines()
        pending = {task.remote(job, shared, folder, warning_lines): job for job in plan.jobs}
        return _gather(ray, pending, plan, on_end)


def _task_options(options: AnalyzeOptions, nodes: list[dict]) -> AnalyzeOptions:
    """The options the tasks run with: the device Ray gives them ('cuda' or 'cpu'), offline
    weights, and a set number of face detection processes."""
    workers = options.face.face_workers
    return replace(options,
                   model=replace(options.model, device=task_device(options.model.device, nodes),
                                 offline=True),
                   face=replace(options.face, face_workers=1 if workers == "auto" else workers))


def task_device(device: str, nodes: list[dict]) -> str:
    """'cuda' for `--device cuda` or `cuda:N` (Ray assigns the GPU), and for `auto` when a
    node of the cluster (`nodes`: each node's resources) has a GPU; else 'cpu'."""
    name = device.lower()
    if name == "auto":
        return "cuda" if any(node.get("GPU", 0) >= 1 for node in nodes) else "cpu"
    if name == "cpu" or re.fullmatch(r"cuda(:\d+)?", name):
        return name.partition(":")[0]
    raise UserError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)")


def task_resources(task_options: AnalyzeOptions, nodes: list[dict]) -> dict[str, int]:
    """What one task asks Ray for: one CPU per face detection process, one GPU on CUDA. A
    UserError when no node of the cluster has that much (Ray would wait for ever)."""
    cpus = task_options.face.face_workers
    gpus = int(task_options.model.device == "cuda")
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        raise UserError(f"no node of the Ray cluster has the {cpus} CPU(s)"
                        f"{' and a GPU' if gpus else ''} a task needs (--face-workers "
                        f"{cpus}, --device {task_options.model.device})")
    return {"num_cpus": cpus, "num_gpus": gpus}


RAY_CONNECT_TIMEOUT_S = 10.0  # nothing answering at a cluster's address by then: one line


# A client's HTTP/2 connection preface and an empty SETTINGS frame: a gRPC server, which a
# Ray cluster's GCS (HOST:PORT) and its client server (ray://) both are, answers with a
# SETTINGS frame of its own (a 9-byte frame header of type 4).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4


def check_reachable(address: str | None, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """UserError unless a gRPC server answers at `address` ('HOST:PORT' or 'ray://HOST:PORT')
    within `timeout` seconds: Ray itself retries a dead address, or one where something else
    listens, for minutes. 'auto', 'local' and a bare --ray (local or RAY_ADDRESS) are not
    probed, nor the protocol of a cluster with TLS (RAY_USE_TLS)."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray {address}: give auto, HOST:PORT or ray://HOST:PORT")
    deadline = time.monotonic() + timeout
    try:
        link = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except OSError as exc:
        reason = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                  else (exc.strerror or str(exc)).lower())
        raise UserError(f"--ray {address}: nothing answers there ({reason}); start the "
                        "cluster's head first (ray start --head) or check the address") from None
    with link:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        answer = _first_frame_header(link, deadline)
    if len(answer) < 9 or answer[3] != _HTTP2_SETTINGS:
        raise UserError(f"--ray {address}: something listens there, but it is not a Ray "
                        f"cluster (no gRPC answer within {timeout:g} s); give the head's GCS "
                        "address (HOST:6379 by default) or its client address "
                        "(ray://HOST:10001)")


def _first_frame_header(link: socket.socket, deadline: float) -> bytes:
    """The first 9 bytes the server sends after our HTTP/2 preface, or fewer when it sends
    less, closes, or says nothing before `deadline`."""
    answer = b""
    try:
        link.sendall(_HTTP2_PREFACE)
        while len(answer) < 9:
            link.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = link.recv(9 - len(answer))
            if not chunk:
                break
            answer += chunk
    except OSError:  # a timeout, a reset
        pass
    return answer


@contextmanager
def _connected(ray: Any, address: str | None) -> Iterator[None]:
    """This process connected to Ray: an existing connection as it is, else `ray.init`
    (shut down again at the end). `ray.init` replaces the SIGTERM handler by one that exits
    without cleaning up; the previous one is put back."""
    if ray.is_initialized():
        yield
        return
    check_reachable(address)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address or None)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the user's one line
        option = f"--ray {address}" if address else "--ray"
        raise UserError(f"{option}: {error_line(exc)}") from None
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    try:
        yield
    finally:
        ray.shutdown()


def _gather(ray: Any, pending: dict, plan: Plan, on_end: OnEnd) -> StudySummary:
    """The outcomes of the `pending` tasks ({ref: job}) as they end; a 'fatal' one, or an
    interrupt, cancels the tasks still pending (their workers are killed) and is raised."""
    summary = StudySummary()
    try:
        while pending:
            for ref in _finished(ray, list(pending)):
                job = pending.pop(ref)
                outcome = _outcome(ray, ref, job, plan)
                if outcome.status == "fatal":
                    raise FatalError(f"on a Ray worker: {outcome.reason}")
                summary.record(job, outcome)
                on_end(job, outcome)
    except BaseException:
        for ref in pending:
            with suppress(Exception):  # a cluster that is gone has nothing left to cancel
                ray.cancel(ref, force=True)
        raise
    return summary


def _finished(ray: Any, refs: list) -> list:
    """The tasks of `refs` that have ended, at least one. It polls, so that signal handlers
    run in Python: inside a blocking Ray wait, an exception a handler raises (the CLI's
    SIGTERM raises Terminated) is lost unless it is a KeyboardInterrupt or SystemExit."""
    while True:
        ended, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if ended:
            return ended
        time.sleep(POLL_SECONDS)


def _outcome(ray: Any, ref: Any, job: Job, plan: Plan) -> JobOutcome:
    """The task's outcome; an exception that escaped the task, or a task Ray gave up on
    (its worker died on every try), is the input's 'failed' outcome."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        return failed(job, plan, error_line(getattr(exc, "cause", None) or exc))
    except ray.exceptions.RayError as exc:
        return failed(job, plan, f"Ray gave up on the task: {error_line(exc)}")


def run_job(job: Job, plan: Plan, folder: str, warning_lines: bool) -> JobOutcome:
    """One Ray task: `job` analysed by `fgnet_video.study.jobs.process_job` in `folder` (the
    driver's working folder) on this worker process's model; 'fatal' with the reason when the
    model cannot be loaded here. `warning_lines`: warnings as one line each, as in the driver."""
    if warning_lines and not warnings_shown_as_lines():
        warnings_as_lines()
    with _working_in(folder):
        try:
            kwargs = plan.options.model.engine_kwargs()
            if kwargs["device"] == "cuda":
                import ray

                kwargs["device"] = task_gpu(ray.get_gpu_ids())
            engine = _engine(kwargs)
        except Exception as exc:  # noqa: BLE001 - reported once by the driver
            log.debug("the model could not be loaded", exc_info=True)
            return JobOutcome("fatal", reason=error_line(exc))
        from fgnet_video.analysis.recording import keep_face_stages

        # the recordings of a worker process share its face stage (Ray's local mode runs
        # tasks in the driver, whose analyses then share it too, until it exits)
        keep_face_stages()
        return process_job(job, engine, plan)


@contextmanager
def _working_in(folder: str) -> Iterator[None]:
    """Inside `folder`; the previous working folder again at the end."""
    previous = os.getcwd()
    try:
        os.chdir(folder)
    except OSError:
        raise UserError(f"{folder}: the working folder of the command is not on this node "
                        "(run it from storage every node sees)") from None
    try:
        yield
    finally:
        os.chdir(previous)


def task_gpu(gpu_ids: list, visible: str | None = None) -> str:
    """The torch device of the GPU Ray assigned to this task (`ray.get_gpu_ids()`, the
    node's GPU ids): its position among the node's CUDA_VISIBLE_DEVICES (`visible`, read from
    the environment when None) when that is set, else the id itself. A UserError unless Ray
    gave exactly one GPU (it gives all of them when the node claims more GPUs than it
    shows)."""
    if len(gpu_ids) != 1:
        raise UserError(f"Ray gave this task {len(gpu_ids)} GPUs instead of one (does the "
                        "node's --num-gpus match the GPUs it has?)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    gpu = str(gpu_ids[0])
    order = [v.strip() for v in visible.split(",")] if visible else []
    return f"cuda:{order.index(gpu) if gpu in order else int(gpu)}"


_engines: dict[tuple, InferenceEngine] = {}  # this worker process's model, by its options


def _engine(engine_kwargs: dict[str, Any]) -> InferenceEngine:
    """The model of `engine_kwargs` (`InferenceEngine.from_weights`): loaded once per process
    and reused; other options (another GPU assigned to a later task) replace it, whose
    memory is given back first."""
    key = tuple(sorted(engine_kwargs.items()))
    if key not in _engines:
        import torch

        from fgnet_video.inference.engine import InferenceEngine

        if _engines:
            _engines.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        _engines[key] = InferenceEngine.from_weights(**engine_kwargs)
    return _engines[key]
