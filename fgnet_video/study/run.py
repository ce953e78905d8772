"""Running an analysis plan: many inputs, one set of outputs each, resumable.

`analyze_inputs` is what `fgnet-video analyze` runs: it plans the outputs
(`fgnet_video.study.plan.plan_jobs`: every check of inputs and output paths, before anything is
loaded) and runs the jobs on one engine, loaded once in this process: one after another, or (`jobs`
> 1) `jobs` recordings at once in worker processes that send their faces to it
(`fgnet_video.study.local_workers`), or as Ray tasks (`fgnet_video.study.ray_cluster`). An input
whose complete outputs exist is skipped unless `overwrite`; one failing input never stops the
others. A model that cannot be loaded, or a device that cannot be used, stops the run once, with one
line.

Signals: SIGINT and SIGTERM stop the run within seconds, worker processes included; queued
inputs are not started; the running inputs' partial outputs are removed (the previous
outputs stay as they were). A worker whose parent dies stops by itself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import replace

from fgnet_video.analysis.sidecar import read_run_record
from fgnet_video.options import AnalyzeOptions
from fgnet_video.study.freshness import stale_reason
from fgnet_video.study.jobs import (
    JobOutcome,
    OnEnd,
    OnEngine,
    OnStart,
    StudySummary,
    failed,
    run_sequential,
)
from fgnet_video.study.plan import Job, Plan, plan_jobs


def analyze_inputs(
    inputs: Iterable[str],
    options: AnalyzeOptions | None = None,
    output: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    overlay_to: str | os.PathLike | None = None,
    on_start: OnStart = lambda job: lambda frames, faces: None,
    on_end: OnEnd = lambda job, outcome: None,
    on_engine: OnEngine = lambda engine: None,
) -> StudySummary:
    """Analyse `inputs` (files, folders, globs, manifests) into `output` (one input) or
    `out_dir`, as `fgnet-video analyze` does: plan the jobs (all checks first), then run
    them on one engine (loaded once; with `options.jobs` > 1 and several inputs, that many
    recordings at once in worker processes feed it). `on_engine(engine)` is called once the
    model is loaded;
    `on_start(job)` returns the job's progress callback (frames, faces);
    `on_end(job, outcome)` follows each job."""
    plan = plan_jobs(inputs, options or AnalyzeOptions(), output, out_dir, overlay_to)
    summary = StudySummary()
    todo = []
    for job in plan.jobs:  # what needs no model is settled first
        if not job.source.exists():
            outcome = failed(job, plan, f"{job.source}: no such file")
        elif not plan.options.overwrite and _finished(job, plan):
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
        from fgnet_video.study.ray_cluster import run_on_ray

        return summary.merged(run_on_ray(plan, on_end))
    from fgnet_video.inference.engine import InferenceEngine

    engine = InferenceEngine.from_weights(**plan.options.model.engine_kwargs())
    on_engine(engine)
    n_jobs = min(plan.options.jobs, len(plan.jobs))
    plan = replace(plan, options=replace(plan.options, jobs=n_jobs))  # recordings at once
    if n_jobs > 1:
        from fgnet_video.study.local_workers import run_parallel

        ran = run_parallel(plan, engine, n_jobs, on_end)
    else:
        ran = run_sequential(plan, engine, on_start, on_end)
    return summary.merged(ran)


class RedoneWarning(UserWarning):
    """A unit whose outputs exist is analysed again: they were made with other settings,
    or their run record is not valid."""


def _finished(job: Job, plan: Plan) -> bool:
    """Whether `job`'s outputs are complete and answer this plan's options; when they exist
    but do not, a RedoneWarning says why the recording is analysed again."""
    outputs = plan.outputs(job)
    if outputs.complete():
        reason = stale_reason(outputs, plan.options, job.source)
        if reason is None:
            return True
        warnings.warn(f"{job.name}: analysed again, its outputs were made with other "
                      f"settings ({reason})", RedoneWarning, stacklevel=2)
    elif outputs.sidecar.exists() and read_run_record(outputs.sidecar) is None:
        warnings.warn(f"{outputs.sidecar}: not a valid run record; {job.name} is analysed "
                      "again", RedoneWarning, stacklevel=2)
    return False
