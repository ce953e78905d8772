"""`fgnet-video analyze`: per-frame AU tables for one recording or a whole study."""

from __future__ import annotations

from pathlib import Path

import click

from fgnet_video.cli.options import CountType, model_options, setting_option
from fgnet_video.errors import UserError
from fgnet_video.options import (
    ALIGN_METHODS,
    DETECTOR_KINDS,
    OVERLAY_SUFFIX,
    TABLE_FORMATS,
    TABLE_LAYOUTS,
    AnalyzeOptions,
    FaceSettings,
    SamplingSettings,
)
from fgnet_video.settings import given


def _sampling_total(info, sampling: SamplingSettings) -> int | None:
    """Expected number of analysed frames, for the progress bar (None when unknown)."""
    if info.duration is None and info.frame_count is None:
        return None
    duration = info.duration or (info.frame_count / info.fps if info.fps else None)
    if duration is None:
        return info.frame_count
    end, fps = sampling.end, sampling.fps
    span = max(0.0, min(end if end is not None else duration, duration) - (sampling.start or 0))
    rate = fps if fps is not None and info.fps and fps < info.fps else info.fps
    return int(round(span * rate)) if rate else info.frame_count


_SECONDS = click.FloatRange(min=0)
_BESIDE = "auto"  # the bare --overlay flag: NAME.overlay.mp4 beside the table
_RAY_DEFAULT = ""  # the bare --ray flag: ray.init()'s default cluster


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Table to write for a single input (a .json sidecar goes beside it).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for one table + sidecar (+ overlay) per input; resumable.")
@model_options
@click.option("--overlay", "overlay_to", is_flag=False, flag_value=_BESIDE, default=None,
              metavar="[FILE]",
              help="Also write an overlay video (FILE for a single input; bare flag: "
                   f"NAME{OVERLAY_SUFFIX} beside each table).")
@setting_option(SamplingSettings, "fps", "--fps", type=click.FloatRange(min=0, min_open=True))
@setting_option(SamplingSettings, "start", "--start", type=_SECONDS)
@setting_option(SamplingSettings, "end", "--end", type=_SECONDS)
@setting_option(FaceSettings, "max_faces", "--max-faces", type=click.IntRange(min=1))
@setting_option(AnalyzeOptions, "table_format", "--format", type=click.Choice(TABLE_FORMATS))
@setting_option(AnalyzeOptions, "columns", "--columns", type=click.Choice(TABLE_LAYOUTS))
@setting_option(AnalyzeOptions, "smooth", "--smooth", metavar="SECONDS", type=_SECONDS)
@setting_option(AnalyzeOptions, "jobs", "--jobs", "-j", type=click.IntRange(min=1))
@setting_option(AnalyzeOptions, "overwrite", "--overwrite", is_flag=True)
@setting_option(AnalyzeOptions, "shard", "--shard", metavar="K/N")
@setting_option(AnalyzeOptions, "ray", "--ray", is_flag=False, flag_value=_RAY_DEFAULT,
                metavar="[ADDRESS]")
@setting_option(AnalyzeOptions, "save_tracks", "--save-tracks", is_flag=True)
@setting_option(AnalyzeOptions, "tracks", "--tracks", metavar="FILE_OR_DIR")
@setting_option(FaceSettings, "detector", "--detector", type=click.Choice(DETECTOR_KINDS))
@setting_option(FaceSettings, "detect_every", "--detect-every", type=click.IntRange(min=1))
@setting_option(FaceSettings, "min_face_size", "--min-face", type=click.FloatRange(min=1))
@setting_option(FaceSettings, "min_confidence", "--min-confidence", type=float)
@setting_option(FaceSettings, "align_method", "--align", type=click.Choice(ALIGN_METHODS))
@setting_option(FaceSettings, "face_workers", "--face-workers", type=CountType("--face-workers"))
@setting_option(FaceSettings, "same_person_distance", "--same-person-distance",
                type=click.FloatRange(min=0, min_open=True))
@setting_option(FaceSettings, "people", "--people", metavar="NAME=PHOTO", multiple=True)
def analyze(inputs, output, out_dir, overlay_to, **params) -> None:
    """Detect AUs in every frame of INPUTS (videos, folders, globs or a manifest CSV)."""
    from fgnet_video.study.run import analyze_inputs

    if overlay_to is not None:
        params["overlay"] = True
    options = AnalyzeOptions.from_kwargs(**given(params))
    if options.ray is not None:
        from fgnet_video.study.ray_cluster import require_ray

        if options.ray and Path(options.ray).exists():  # a bare --ray took an input
            raise UserError(f"--ray {options.ray}: that is a file or folder, not a Ray "
                            "address (give a bare --ray after the inputs)")
        require_ray(single_output=output is not None)
    reporter = Reporter(options.sampling, single=output is not None,
                        keyframe_period=options.face.detect_every)
    summary = analyze_inputs(inputs, options, output=output, out_dir=out_dir,
                             overlay_to=None if overlay_to == _BESIDE else overlay_to,
                             on_start=reporter.on_start, on_engine=reporter.on_engine,
                             on_end=reporter.on_end)
    reporter.summarise(summary)


def _done_line(outcome) -> str:
    """'118 rows (118 faces, 0 frames without a face) in 3.2 s -> out.csv, out.json'."""
    stats = outcome.stats or {}
    faces, empty = stats.get("faces", 0), stats.get("frames_without_face", 0)
    return (f"{faces + empty} rows ({faces} faces, {empty} frames without a face) in "
            f"{stats.get('wall_seconds', 0):.1f} s -> {', '.join(outcome.written)}")


def _with_source(source: str, reason: str | None) -> str:
    """'<source>: <reason>', without repeating a source the reason already starts with."""
    reason = reason or "failed"
    return reason if reason.startswith(source) else f"{source}: {reason}"


class Reporter:
    """Progress bars (on a terminal only), one line per finished input, and the summary."""

    def __init__(self, sampling: SamplingSettings, single: bool, keyframe_period: int):
        """`keyframe_period`: the face stage's `detect_every` (`TimeLeft`'s period)."""
        from rich.console import Console

        self.sampling, self.keyframe_period = sampling, keyframe_period
        self.single = single
        self.console = Console(stderr=True)
        self._progress = None
        self._device_type = "cpu"  # where the model runs, once it is loaded

    def on_engine(self, engine) -> None:
        """Say where the model runs."""
        from fgnet_video.analysis.eta import engine_line

        click.echo(f"fgnet-video: {engine_line(engine)}", err=True)
        self._device_type = engine.device.type

    def _expected_frames(self, job) -> int | None:
        from fgnet_video.media.video import probe

        try:
            return _sampling_total(probe(job.source), self.sampling)
        except UserError:
            return None

    def on_start(self, job):
        from fgnet_video.analysis.eta import TimeLeft

        total = self._expected_frames(job)
        time_left = TimeLeft(total, self._device_type, self.keyframe_period)
        say_time_left = self.single or self.console.is_terminal

        def tell(frames: int) -> None:
            line = time_left.update(frames) if say_time_left else None
            if line is not None:
                click.echo(f"fgnet-video: {job.source.name}: {line}", err=True)

        if not self.console.is_terminal:
            return lambda frames, faces: tell(frames)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("frames, {task.fields[faces]} faces, {task.fields[fps]:.1f} fps"),
            TimeRemainingColumn(), console=self.console, transient=True)
        self._progress.start()
        task = self._progress.add_task(job.source.name, total=total, faces=0, fps=0.0)

        def update(frames: int, faces: int) -> None:
            elapsed = self._progress.tasks[0].elapsed or 1e-9
            self._progress.update(task, completed=frames, faces=faces, fps=frames / elapsed)
            tell(frames)

        return update

    def on_end(self, job, outcome) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if outcome.truncated:
            click.echo(f"warning: {job.source}: truncated video: {outcome.truncated}; the "
                       "decodable frames were analysed", err=True)
        if outcome.frames == 0:
            click.echo(f"warning: {job.source}: no frame in the selected span (--start/--end "
                       "past the video?): the table has its header only", err=True)
        if self.single:
            if outcome.status == "done":
                click.echo(_done_line(outcome), err=True)
            return
        if outcome.status == "failed":
            click.echo(f"failed  {_with_source(str(job.source), outcome.reason)}", err=True)
        else:
            click.echo(f"{outcome.status:<7} {job.source}", err=True)

    def summarise(self, summary) -> None:
        if self.single:
            if summary.failed:
                raise UserError(summary.failed[0][1])
            if summary.skipped:
                click.echo(f"{summary.skipped[0]}: outputs are complete already, skipped "
                           "(use --overwrite to redo)", err=True)
            return
        truncated = f" ({len(summary.truncated)} truncated)" if summary.truncated else ""
        click.echo(f"{len(summary.done)} done{truncated}, {len(summary.skipped)} skipped, "
                   f"{len(summary.failed)} failed", err=True)
        for source, reason in summary.failed:
            click.echo(f"  failed: {_with_source(source, reason)}", err=True)
        if summary.failed:
            raise SystemExit(1)
