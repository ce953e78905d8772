"""The building blocks of a study that every executor shares: one job analysed
(`process_job`, never raising for the input's own failure), its outcome, the failure record,
the summary of outcomes, and the sequential executor.

The executors (`run_sequential` here, `fgnet_video.study.local_workers.run_parallel`,
`fgnet_video.study.ray_cluster.run_on_ray`) import this module; `fgnet_video.study.run`
chooses among them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fgnet_video.errors import error_line
from fgnet_video.study.plan import Job, Plan

if TYPE_CHECKING:
    from fgnet_video.analysis.stream import Scorer
    from fgnet_video.inference.engine import InferenceEngine

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
class StudySummary:
    """Inputs by outcome: done (and which of those were truncated), skipped, failed + why."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[tuple[str, str]] = field(default_factory=list)

    def merged(self, other: StudySummary) -> StudySummary:
        """This summary with `other`'s inputs added."""
        return StudySummary(self.done + other.done, self.skipped + other.skipped,
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
    from fgnet_video.analysis.recording import analyze_to_files

    outputs = plan.outputs(job)
    try:
        stats = analyze_to_files(job.source, engine, outputs, plan.options, on_progress,
                                 tracks_in=plan.tracks_in(job))
    except Exception as exc:  # noqa: BLE001 - one input's failure is reported, not fatal
        log.debug("analysis of %s failed", job.source, exc_info=True)
        return failed(job, plan, error_line(exc))
    outputs.failure_record.unlink(missing_ok=True)
    return JobOutcome("done", truncated=stats.truncated, frames=stats.frames,
                      stats=stats.as_dict(),
                      written=tuple(str(p) for p in outputs.finals() if p.exists()))


def failed(job: Job, plan: Plan, reason: str) -> JobOutcome:
    """The 'failed' outcome of `job`; in a study (--out-dir) the reason is also kept beside
    its outputs, where `fgnet-video status` reads it."""
    from fgnet_video.analysis.sidecar import write_failure_record

    if job.paths is None:
        try:
            write_failure_record(plan.outputs(job).failure_record, job.source, reason)
        except OSError:
            log.debug("could not record the failure of %s", job.source, exc_info=True)
    return JobOutcome("failed", reason=reason)


OnStart = Callable[[Job], Callable[[int, int], None]]
OnEnd = Callable[[Job, JobOutcome], None]
OnEngine = Callable[["InferenceEngine"], None]


def run_sequential(plan: Plan, engine: InferenceEngine, on_start: OnStart,
                   on_end: OnEnd) -> StudySummary:
    """Every job in turn on `engine`, sharing one face stage (`face_stages_kept`)."""
    from fgnet_video.analysis.recording import face_stages_kept

    summary = StudySummary()
    with face_stages_kept():
        for job in plan.jobs:
            outcome = process_job(job, engine, plan, on_start(job))
            summary.record(job, outcome)
            on_end(job, outcome)
    return summary
