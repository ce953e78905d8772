"""Running an analysis plan: many inputs, one set of outputs each, resumable.

`analyze_inputs` is what `fgnet-video analyze` runs: it plans the outputs
(`fgnet_video.plan.plan_jobs`: every check of inputs and output paths, before anything is
loaded) and runs the jobs on one engine, loaded once in this process: one after another, or
(`jobs` > 1) `jobs` recordings at once in worker processes that send their faces to it
(`fgnet_video.parallel_study`), or as Ray tasks (`fgnet_video.ray_study`). An input whose
complete outputs exist is skipped unless `overwrite`; one failing input never stops the
others. A model that cannot be loaded, or a device that cannot be used, stops the run once,
with one line.

Signals: SIGINT and SIGTERM stop the run within seconds, worker processes included; queued
inputs are not started; the running inputs' partial outputs are removed (the previous
outputs stay as they were). A worker whose parent dies stops by itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from fgnet_video.errors import error_line
from fgnet_video.options import AnalyzeOptions
from fgnet_video.plan import Job, Plan, plan_jobs

if TYPE_CHECKING:
    from fgnet_video.inference import InferenceEngine
    from fgnet_video.pipeline import Scorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended: 'done' (with `truncated`, the number of `frames` analysed, the
    run's `stats` (RunStats.as_dict) and the `written` outputs), 'skipped' (complete outputs
    exist), 'failed' (`reason`: one line)."""

    status: str
    reason: str | None = None
    truncated: str | None = None
    frames: int | None = None
    stats: dict | None = None
    written: tuple[str, ...] = ()


@dataclass
class BatchSummary:
    """Inputs by outcome: done (and which of those were truncated), skipped, failed + why."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[tuple[str, str]] = field(default_factory=list)

    def merged(self, other: BatchSummary) -> BatchSummary:
        """This summary with `other`'s inputs added."""
        return BatchSummary(self.done + other.done, self.skipped + other.skipped,
                            self.failed + other.failed, self.truncated + other.truncated)

    def record(self, job: Job, outcome: JobOutcome) -> None:
        source = str(job.source)
        if outcome.status == "skipped":
            self.skipped.append(source)
        elif outcome.status == "failed":
            self.failed.append((source, outcome.reason or "failed"))
        else:
            self.done.append(source)
            if outcome.truncated:
                self.truncated.append((source, outcome.truncated))


def process_job(job: Job, engine: Scorer, plan: Plan,
                on_progress: Callable[[int, int], None] = lambda frames, faces: None,
                ) -> JobOutcome:
    """Analyse one job (whether it is needed at all is `analyze_inputs`' decision). Never
    raises for the input's own failure (bad file, failed write): that is a 'failed'
    outcome; interrupts propagate."""
    from fgnet_video.analyze import analyze_to_files

    outputs = plan.outputs(job)
    try:
        stats = analyze_to_files(job.source, engine, outputs, plan.options, on_progress,
                                 tracks_in=plan.tracks_in(job))
    except Exception as exc:  # noqa: BLE001 - one input's failure is reported, not fatal
        log.debug("analysis of %s failed", job.source, exc_info=True)
        return failed(job, plan, error_line(exc))
    outputs.failure_record.unlink(missing_ok=True)
    return JobOutcome("done", truncated=stats.truncated, frames=stats.frames,
                      stats=stats.as_dict(), written=tuple(str(p) for p in outputs.finals()))


def failed(job: Job, plan: Plan, reason: str) -> JobOutcome:
    """The 'failed' outcome of `job`; in a study (--out-dir) the reason is also kept beside
    its outputs, where `fgnet-video status` reads it."""
    from fgnet_video.atomic import write_json

    if job.paths is None:
        try:
            write_json(plan.outputs(job).failure_record,
                       {"tool": "fgnet-video", "input": str(job.source), "reason": reason,
                        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except OSError:
            log.debug("could not record the failure of %s", job.source, exc_info=True)
    return JobOutcome("failed", reason=reason)


OnStart = Callable[[Job], Callable[[int, int], None]]
OnEnd = Callable[[Job, JobOutcome], None]
OnEngine = Callable[["InferenceEngine"], None]


def run_sequential(plan: Plan, engine: InferenceEngine, on_start: OnStart,
                   on_end: OnEnd) -> BatchSummary:
    """Every job in turn on `engine`."""
    summary = BatchSummary()
    for job in plan.jobs:
        outcome = process_job(job, engine, plan, on_start(job))
        summary.record(job, outcome)
        on_end(job, outcome)
    return summary


def analyze_inputs(
    inputs: Iterable[str],
    options: AnalyzeOptions | None = None,
    output: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    overlay_to: str | os.PathLike | None = None,
    on_start: OnStart = lambda job: lambda frames, faces: None,
    on_end: OnEnd = lambda job, outcome: None,
    on_engine: OnEngine = lambda engine: None,
) -> BatchSummary:
    """Analyse `inputs` (files, folders, globs, manifests) into `output` (one input) or
    `out_dir`, as `fgnet-video analyze` does: plan the jobs (all checks first), then run
    them on one engine (loaded once; with `options.jobs` > 1 and several inputs, that many
    recordings at once in worker processes feed it). `on_engine(engine)` is called once the
    model is loaded;
    `on_start(job)` returns the job's progress callback (frames, faces);
    `on_end(job, outcome)` follows each job."""
    plan = plan_jobs(inputs, options or AnalyzeOptions(), output, out_dir, overlay_to)
    summary = BatchSummary()
    todo = []
    for job in plan.jobs:  # what needs no model is settled first
        if not job.source.exists():
            outcome = failed(job, plan, f"{job.source}: no such file")
        elif not plan.options.overwrite and plan.outputs(job).complete():
            outcome = JobOutcome("skipped")
        else:
            todo.append(job)
            continue
        summary.record(job, outcome)
        on_end(job, outcome)
    if not todo:
        return summary
    plan = replace(plan, jobs=todo)
    if plan.options.ray is not None:  # one Ray task per job; the model loads on the workers
        from fgnet_video.ray_study import run_on_ray

        return summary.merged(run_on_ray(plan, on_end))
    from fgnet_video.inference import InferenceEngine

    engine = InferenceEngine.from_weights(**plan.options.model.engine_kwargs())
    on_engine(engine)
    n_jobs = min(plan.options.jobs, len(plan.jobs))
    plan = replace(plan, options=replace(plan.options, jobs=n_jobs))  # recordings at once
    if n_jobs > 1:
        from fgnet_video.parallel_study import run_parallel

        ran = run_parallel(plan, engine, n_jobs, on_end)
    else:
        ran = run_sequential(plan, engine, on_start, on_end)
    return summary.merged(ran)
