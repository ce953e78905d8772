"""Batch analysis of study recordings: many inputs, one set of outputs each, resumable.

Inputs are video files, folders (searched recursively for videos), glob patterns, or a
manifest CSV (a `path` column, else the first column; relative paths are relative to the
manifest; an optional `name` column sets the output name). Each input gets
`<out_dir>/<name>.csv` (or .parquet), `<name>.json` (the sidecar, written last) and, if
asked, `<name>.overlay.mp4`; `name` is the file's stem, or its path inside a given folder.
An input whose complete outputs exist is skipped unless `overwrite`; one failing input never
stops the others. `analyze_inputs` is what `fgnet-video analyze` runs: it plans the outputs
(`plan_jobs`: every check of inputs and output paths) and runs the jobs.
"""

from __future__ import annotations

import csv
import glob
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from fgnet_video.analyze import OutputPaths, analyze_to_files
from fgnet_video.errors import UserError, error_line, warnings_as_lines, warnings_shown_as_lines
from fgnet_video.inference import InferenceEngine
from fgnet_video.options import AnalyzeOptions
from fgnet_video.outputs import table_format
from fgnet_video.video import VIDEO_SUFFIXES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One input and the name its outputs take (relative, without suffix), or explicit
    output paths (a single input analysed with -o)."""

    source: Path
    name: str
    paths: OutputPaths | None = None

    def outputs(self, out_dir: Path, fmt: str, overlay: bool) -> OutputPaths:
        """The explicit paths, else `<out_dir>/<name>.<fmt>` and the outputs beside it."""
        if self.paths is not None:
            return self.paths
        base = out_dir / self.name
        return OutputPaths.for_table(base.with_name(f"{base.name}.{fmt}"), overlay)


def _manifest_jobs(manifest: Path) -> list[Job]:
    try:
        with open(manifest, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{manifest}: unreadable manifest ({exc})") from None
    if not rows:
        raise UserError(f"{manifest}: the manifest lists no inputs")
    column = "path" if "path" in rows[0] else next(iter(rows[0]))
    jobs = []
    for row in rows:
        source = Path(row[column])
        if not source.is_absolute():
            source = manifest.parent / source
        jobs.append(Job(source, row.get("name") or source.stem))
    return jobs


def _folder_jobs(folder: Path) -> list[Job]:
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    return [Job(p, str(p.relative_to(folder).with_suffix(""))) for p in videos]


def expand_inputs(specs: Iterable[str]) -> list[Job]:
    """Jobs for files, folders, glob patterns and manifest CSVs, in the order given.

    A name that does not exist and matches no glob is still a job (it will fail with a clear
    reason and be reported, without stopping the others).
    """
    jobs: list[Job] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            jobs += _folder_jobs(path)
        elif path.suffix.lower() == ".csv" and path.is_file():
            jobs += _manifest_jobs(path)
        elif not path.exists() and glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise UserError(f"{spec}: the pattern matches no file")
            jobs += [Job(Path(m), Path(m).stem) for m in matches if Path(m).is_file()]
        else:
            jobs.append(Job(path, path.stem))
    names: dict[str, Path] = {}
    for job in jobs:
        if job.name in names and names[job.name] != job.source:
            raise UserError(f"{names[job.name]} and {job.source} would both write outputs named "
                            f"{job.name!r}: list them in a manifest with distinct names")
        names[job.name] = job.source
    return list({job.name: job for job in jobs}.values())


@dataclass
class BatchSummary:
    """Inputs by outcome: done (and which of those were truncated), skipped, failed + why."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[tuple[str, str]] = field(default_factory=list)


def plan_jobs(inputs: Iterable[str], options: AnalyzeOptions,
              output: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
              overlay_to: str | os.PathLike | None = None) -> list[Job]:
    """The jobs of an analysis: one input written to `output` (its sidecar beside it, its
    overlay at `overlay_to` or beside it when `options.overlay`), or any number of inputs
    written into `out_dir`. UserError for every inconsistent combination."""
    if (output is None) == (out_dir is None):
        raise UserError("give either -o FILE (one input) or --out-dir DIR")
    if out_dir is not None and overlay_to is not None:
        raise UserError("with --out-dir, give --overlay without a file name")
    jobs = expand_inputs(inputs)
    if not jobs:
        raise UserError("no video found in the given inputs")
    if output is None:
        return jobs
    if len(jobs) > 1:
        raise UserError(f"-o takes one input, got {len(jobs)}: use --out-dir")
    paths = OutputPaths.for_table(output, overlay_to or options.overlay)
    return [Job(jobs[0].source, paths.table.stem, paths)]


def process_job(job: Job, engine: InferenceEngine, out_dir: Path, options: AnalyzeOptions,
                on_progress: Callable[[int, int], None] = lambda frames, faces: None,
                ) -> tuple[str, str | None]:
    """Analyse one job unless its complete outputs exist (and not `options.overwrite`):
    ('done', truncation reason or None), ('skipped', None) or ('failed', one-line reason).
    Never raises for the input's failure."""
    outputs = job.outputs(out_dir, options.table_format or "csv", options.overlay)
    if not options.overwrite and outputs.complete():
        return "skipped", None
    try:
        stats = analyze_to_files(job.source, engine, outputs, options, on_progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one input's failure is reported, not fatal
        log.debug("analysis of %s failed", job.source, exc_info=True)
        return "failed", error_line(exc)
    return "done", stats.truncated


class BatchRun:
    """Runs jobs one after another on one engine, or in `n_jobs` worker processes that
    each load their own engine from the options' model settings."""

    def __init__(self, out_dir: Path, options: AnalyzeOptions):
        self.out_dir, self.options = out_dir, options
        self.summary = BatchSummary()

    def record(self, job: Job, status: str, detail: str | None) -> None:
        if status == "skipped":
            self.summary.skipped.append(str(job.source))
        elif status == "failed":
            self.summary.failed.append((str(job.source), detail or "failed"))
        else:
            self.summary.done.append(str(job.source))
            if detail:
                self.summary.truncated.append((str(job.source), detail))

    def run(self, jobs: list[Job], engine: InferenceEngine,
            on_start: Callable[[Job], Callable[[int, int], None]] = lambda job: lambda f, n: None,
            on_end: Callable[[Job, str, str | None], None] = lambda job, status, detail: None,
            ) -> BatchSummary:
        for job in jobs:
            status, detail = process_job(job, engine, self.out_dir, self.options, on_start(job))
            self.record(job, status, detail)
            on_end(job, status, detail)
        return self.summary

    def run_parallel(self, jobs: list[Job], n_jobs: int,
                     on_end: Callable[[Job, str, str | None], None] = lambda j, s, d: None,
                     ) -> BatchSummary:
        threads = max(1, (os.cpu_count() or 1) // n_jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(n_jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(self.options.model.engine_kwargs(), threads,
                                           warnings_shown_as_lines())) as pool:
            futures = {pool.submit(_worker_job, job, self.out_dir, self.options): job
                       for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    status, detail = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker that died (e.g. the model)
                    status, detail = "failed", error_line(exc)
                self.record(job, status, detail)
                on_end(job, status, detail)
        return self.summary


_worker_engine: InferenceEngine | None = None


def _init_worker(engine_args: dict, threads: int, warning_lines: bool) -> None:
    """Load the model once per worker process (which shows warnings as its parent does)."""
    global _worker_engine
    import torch

    if warning_lines:
        warnings_as_lines()
    torch.set_num_threads(threads)
    _worker_engine = InferenceEngine.from_weights(**engine_args)


def _worker_job(job: Job, out_dir: Path, options: AnalyzeOptions) -> tuple[str, str | None]:
    assert _worker_engine is not None
    return process_job(job, _worker_engine, out_dir, options)


def analyze_inputs(
    inputs: Iterable[str],
    options: AnalyzeOptions | None = None,
    output: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    overlay_to: str | os.PathLike | None = None,
    on_start: Callable[[Job], Callable[[int, int], None]] = lambda job: lambda f, n: None,
    on_end: Callable[[Job, str, str | None], None] = lambda job, status, detail: None,
) -> BatchSummary:
    """Analyse `inputs` (files, folders, globs, manifests) into `output` (one input) or
    `out_dir`, as `fgnet-video analyze` does: plan the jobs, then run them on one engine, or
    in `options.jobs` worker processes when there are several inputs. `on_start(job)` returns
    the job's progress callback (frames, faces); `on_end(job, status, detail)` follows each."""
    options = options or AnalyzeOptions()
    jobs = plan_jobs(inputs, options, output, out_dir, overlay_to)
    if output is not None and options.table_format is None:
        options = replace(options, table_format=table_format(output))
    run = BatchRun(Path(out_dir or "."), options)
    if options.jobs > 1 and len(jobs) > 1:
        return run.run_parallel(jobs, options.jobs, on_end=on_end)
    engine = InferenceEngine.from_weights(**options.model.engine_kwargs())
    return run.run(jobs, engine, on_start=on_start, on_end=on_end)
