"""The plan of an analysis: which inputs (`expand_inputs`), which outputs each one gets
(`Job`, `OutputPaths`), all checked before any work starts (`plan_jobs`, through the output
guard `fgnet_video.analysis.guard.check_outputs`).

Inputs are video files, folders (searched recursively for videos), glob patterns, or a
manifest CSV (a `path` column, else the first column; relative paths are relative to the
manifest; an optional `name` column sets the output name). Each input gets
`<out_dir>/<name>.csv` (or .parquet), `<name>.json` (the sidecar, committed last) and, if
asked, `<name>.overlay.mp4`; `name` is the file's stem, or its path inside a given folder.
This module imports nothing heavy, so a bad command line is refused before torch loads.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from fgnet_video.analysis.guard import (
    OutputClash,
    analysis_unit,
    check_outputs,
    single_outputs,
)
from fgnet_video.analysis.sidecar import OutputPaths, recorded_outputs
from fgnet_video.analysis.tables import table_format
from fgnet_video.errors import UserError
from fgnet_video.media.video import VIDEO_SUFFIXES, probe
from fgnet_video.options import OVERLAY_SUFFIX, SIDECAR_SUFFIX, TRACKS_SUFFIX, AnalyzeOptions
from fgnet_video.paths import name_problem


@dataclass(frozen=True)
class Job:
    """One input and the name its outputs take (relative, without suffix), or explicit
    output paths (a single input analysed with -o)."""

    source: Path
    name: str
    paths: OutputPaths | None = None

    def outputs(self, out_dir: Path, fmt: str, overlay: bool, tracks: bool) -> OutputPaths:
        """The explicit paths, else `<out_dir>/<name>.<fmt>` and the outputs beside it."""
        if self.paths is not None:
            return self.paths
        base = out_dir / self.name
        return OutputPaths.for_table(base.with_name(f"{base.name}.{fmt}"), overlay, tracks)


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
    for number, row in enumerate(rows, start=2):  # line numbers, after the header
        value = row.get(column)
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{manifest}: line {number} gives no {column}")
        name = row.get("name") or Path(value).stem
        for what, text in ((column, value), ("name", name)):
            problem = name_problem(text)
            if problem is not None:
                raise UserError(f"{manifest}: line {number}: the {what} {problem}")
        source = Path(value)
        if not source.is_absolute():
            source = manifest.parent / source
        jobs.append(Job(source, name))
    return jobs


def _folder_jobs(folder: Path) -> list[Job]:
    """The videos under `folder`, less hidden files (our partials and backups among them) and
    what an analysis wrote there: the outputs its run records list, and NAME.overlay.mp4
    beside NAME.json (so a study whose --out-dir is its input folder is resumed, not fed its
    own overlays)."""
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES
                    and not p.name.startswith("."))
    ours: dict[Path, set[str]] = {}
    jobs = []
    for video in videos:
        if video.parent not in ours:
            ours[video.parent] = recorded_outputs(video.parent)
        overlay_of = video.name.removesuffix(OVERLAY_SUFFIX)
        if os.path.realpath(video) in ours[video.parent] or (
                overlay_of != video.name
                and video.with_name(overlay_of + SIDECAR_SUFFIX).exists()):
            continue
        jobs.append(Job(video, str(video.relative_to(folder).with_suffix(""))))
    return jobs


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
    names: dict[str, tuple[str, Path]] = {}  # casefolded name -> (name, source)
    for job in jobs:
        problem = name_problem(job.name)
        if problem is not None:  # the name of a file given, found in a folder or matched
            raise OutputClash(f"{str(job.source)!r}: its output name {problem}; rename the "
                              "file, or give it another name in a manifest")
        key = job.name.casefold()  # names differing in case only: one file on macOS, Windows
        if key in names and names[key][1] != job.source:
            other, source = names[key]
            what = (f"named {other!r}" if other == job.name else
                    f"named {other!r} and {job.name!r}, one file where case is ignored (macOS, "
                    "Windows)")
            raise OutputClash(f"{source} and {job.source} would both write outputs {what}: "
                              "list them in a manifest with distinct names")
        names[key] = (job.name, job.source)
    return list({job.name: job for job in jobs}.values())


def parse_shard(text: str) -> tuple[int, int]:
    """(K, N) from 'K/N' (1 <= K <= N); UserError otherwise."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard takes K/N, e.g. 3/10, not {text!r}") from None
    if not 1 <= k <= n:
        raise UserError(f"--shard {text}: K must be between 1 and N")
    return k, n


def in_shard(name: str, shard: tuple[int, int]) -> bool:
    """Whether the job whose outputs are named `name` belongs to shard (K, N): by a hash of
    the name, so every job is in exactly one shard and adding inputs to a study never moves
    another input to another shard."""
    k, n = shard
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) % n == k - 1


@dataclass(frozen=True)
class Plan:
    """The jobs of a run, where their outputs go, and the options they run with (the table
    format resolved)."""

    jobs: list[Job]
    out_dir: Path
    options: AnalyzeOptions

    def outputs(self, job: Job) -> OutputPaths:
        return job.outputs(self.out_dir, self.options.table_format or "csv",
                           self.options.overlay, self.options.save_tracks)

    def tracks_in(self, job: Job) -> Path | None:
        """The saved tracks `job` replays: the --tracks file (one input), or
        `<tracks folder>/<name>.tracks.npz`; None without --tracks."""
        given = self.options.tracks
        if given is None:
            return None
        if len(self.jobs) == 1 and job.paths is not None:
            return Path(given)
        return Path(given) / f"{job.name}{TRACKS_SUFFIX}"


def plan_jobs(inputs: Iterable[str], options: AnalyzeOptions,
              output: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
              overlay_to: str | os.PathLike | None = None) -> Plan:
    """The plan of an analysis: one input written to `output` (its sidecar beside it, its
    overlay at `overlay_to` or beside it when `options.overlay`), or any number of inputs
    written into `out_dir`. UserError for every inconsistent combination, OutputClash (exit
    status 2) for outputs that would replace an input, another output, a non-regular file,
    or leave `out_dir` (`check_outputs`). Nothing is written."""
    if (output is None) == (out_dir is None):
        raise UserError("give either -o FILE (one input) or --out-dir DIR")
    if out_dir is not None and overlay_to is not None:
        raise UserError("with --out-dir, give --overlay without a file name")
    jobs = expand_inputs(inputs)
    if not jobs:
        raise UserError("no video found in the given inputs")
    if options.shard is not None:
        if out_dir is None:
            raise UserError("--shard goes with --out-dir")
        shard = parse_shard(options.shard)
        jobs = [job for job in jobs if in_shard(job.name, shard)]  # may leave none
    fmt = options.table_format or "csv"
    if output is not None:
        if len(jobs) > 1:
            raise UserError(f"-o takes one input, got {len(jobs)}: use --out-dir")
        probe(jobs[0].source)  # a missing or unreadable video: its one line, before any load
        fmt = table_format(output, options.table_format)
        paths = single_outputs(output, overlay_to or options.overlay, options.save_tracks)
        jobs = [Job(jobs[0].source, paths.table.stem, paths)]
    plan = Plan(jobs, Path(out_dir or "."), replace(options, table_format=fmt))
    if options.tracks is not None:
        folder = out_dir is not None
        if not Path(options.tracks).exists():
            raise UserError(f"--tracks {options.tracks}: no such "
                            + ("folder" if folder else "file"))
        if folder != Path(options.tracks).is_dir():
            raise UserError(f"--tracks {options.tracks}: give "
                            + ("the folder of a --save-tracks run with --out-dir" if folder
                               else "the .tracks.npz file of the input with -o"))
    tracks_in = [t for t in map(plan.tracks_in, jobs) if t is not None]
    units = [analysis_unit(job.source, plan.outputs(job)) for job in jobs]
    check_outputs(units, out_dir, extra_inputs=options.model.files() + tracks_in)
    return plan
