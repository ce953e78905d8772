"""`fgnet-video analyze`: per-frame AU tables for one recording or a whole study."""

from __future__ import annotations

from pathlib import Path

import click

from fgnet_video.cli.options import (
    batch_size_option,
    dataset_option,
    device_option,
    engine_options,
    features_option,
    offline_option,
    precision_option,
    psp_option,
    speed_options,
    weights_option,
)
from fgnet_video.errors import UserError


def _sampling_total(info, fps: float | None, start: float | None, end: float | None):
    """Expected number of analysed frames, for the progress bar (None when unknown)."""
    if info.duration is None and info.frame_count is None:
        return None
    duration = info.duration or (info.frame_count / info.fps if info.fps else None)
    if duration is None:
        return info.frame_count
    span = max(0.0, min(end if end is not None else duration, duration) - (start or 0.0))
    rate = fps if fps is not None and info.fps and fps < info.fps else info.fps
    return int(round(span * rate)) if rate else info.frame_count


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Table to write for a single input (a .json sidecar goes beside it).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for one table + sidecar (+ overlay) per input; resumable.")
@weights_option
@psp_option
@dataset_option
@click.option("--overlay", is_flag=False, flag_value="auto", default=None, metavar="[FILE]",
              help="Also write an overlay video (FILE for a single input; with --out-dir, "
                   "give the bare flag: NAME.overlay.mp4 per input).")
@device_option
@precision_option
@batch_size_option
@speed_options
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Analyse this many frames per second (by timestamp); default every frame.")
@click.option("--start", type=click.FloatRange(min=0), default=None, help="Start time (s).")
@click.option("--end", type=click.FloatRange(min=0), default=None, help="End time (s).")
@click.option("--max-faces", type=click.IntRange(min=1), default=None,
              help="At most this many faces per frame (largest first).")
@features_option
@click.option("--format", "table_format", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="Table format.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Inputs analysed at once, in worker processes (each loads the model).")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose outputs are complete.")
@offline_option
@click.option("--detector", type=click.Choice(["hog", "cnn"]), default="hog", show_default=True,
              help="dlib face detector.")
@click.option("--detect-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Run the detector every N frames; track in between.")
@click.option("--min-face", type=click.FloatRange(min=1), default=80.0, show_default=True,
              help="Smallest face side in pixels.")
@click.option("--min-confidence", type=float, default=0.0, show_default=True,
              help="Detector score a face needs (HOG margin; 0.3-0.5 drops face-like patterns).")
@click.option("--align", "align_method", type=click.Choice(["fast", "exact"]), default="fast",
              show_default=True, help="Alignment: one warp (fast) or the release's PIL recipe.")
def analyze(inputs, output, out_dir, weights, psp, dataset, overlay, device, precision,
            batch_size, channels_last, cuda_graphs, compile_model, fps, start, end, max_faces,
            features, table_format, jobs, overwrite, offline, detector, detect_every, min_face,
            min_confidence, align_method) -> None:
    """Detect AUs in every frame of INPUTS (videos, folders, globs or a manifest CSV)."""
    from fgnet_video.analyze import AnalyzeOptions, OutputPaths
    from fgnet_video.batch import BatchRun, Job, expand_inputs
    from fgnet_video.face.pipeline import FaceSettings
    from fgnet_video.pipeline import SamplingSettings

    if (output is None) == (out_dir is None):
        raise UserError("give either -o FILE (one input) or --out-dir DIR")
    if start is not None and end is not None and end <= start:
        raise UserError(f"--end ({end}) must be after --start ({start})")
    if out_dir is not None and overlay not in (None, "auto"):
        raise UserError("with --out-dir, give --overlay without a file name")
    jobs_list = expand_inputs(inputs)
    if not jobs_list:
        raise UserError("no video found in the given inputs")
    if output is not None:
        if len(jobs_list) > 1:
            raise UserError(f"-o takes one input, got {len(jobs_list)}: use --out-dir")
        if Path(output).suffix.lower() == ".parquet":
            table_format = "parquet"
        overlay_path = None
        if overlay is not None:
            overlay_path = Path(output).with_suffix(".overlay.mp4") if overlay == "auto" \
                else Path(overlay)
        paths = OutputPaths.beside(output, overlay_path)
        jobs_list = [Job(jobs_list[0].source, paths.table.stem, paths)]
    options = AnalyzeOptions(
        SamplingSettings(fps, start, end),
        FaceSettings(detector=detector, detect_every=detect_every, min_face_size=min_face,
                     min_confidence=min_confidence, max_faces=max_faces,
                     align_method=align_method),
        table_format,
    )
    engine_args = dict(weights=weights, psp=psp, dataset=dataset, features=features,
                       offline=offline or None, device=device, precision=precision,
                       batch_size=batch_size,
                       **engine_options(channels_last, cuda_graphs, compile_model))
    run = BatchRun(Path(out_dir or "."), options, overlay=overlay is not None,
                   overwrite=overwrite)
    reporter = Reporter(sampling=options.sampling)
    reporter.single = output is not None
    if jobs > 1 and len(jobs_list) > 1:
        summary = run.run_parallel(jobs_list, jobs, engine_args, on_end=reporter.on_end)
    else:
        from fgnet_video.inference import InferenceEngine

        summary = run.run(jobs_list, InferenceEngine.from_weights(**engine_args),
                          on_start=reporter.on_start, on_end=reporter.on_end)
    reporter.summarise(summary, single=output is not None)


def _with_source(source: str, reason: str | None) -> str:
    """'<source>: <reason>', without repeating a source the reason already starts with."""
    reason = reason or "failed"
    return reason if reason.startswith(source) else f"{source}: {reason}"


class Reporter:
    """Progress bars (on a terminal only), one line per finished input, and the summary."""

    def __init__(self, sampling):
        from rich.console import Console

        self.sampling = sampling
        self.console = Console(stderr=True)
        self._progress = None
        self.single = False

    def on_start(self, job):
        if not self.console.is_terminal:
            return lambda frames, faces: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from fgnet_video.video import probe

        try:
            s = self.sampling
            total = _sampling_total(probe(job.source), s.fps, s.start, s.end)
        except UserError:
            total = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("frames, {task.fields[faces]} faces, {task.fields[fps]:.1f} fps"),
            TimeRemainingColumn(), console=self.console, transient=True)
        self._progress.start()
        task = self._progress.add_task(job.source.name, total=total, faces=0, fps=0.0)

        def update(frames: int, faces: int) -> None:
            elapsed = self._progress.tasks[0].elapsed or 1e-9
            self._progress.update(task, completed=frames, faces=faces, fps=frames / elapsed)

        return update

    def on_end(self, job, status: str, detail: str | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if status == "done" and detail:
            click.echo(f"warning: {job.source}: truncated video: {detail}; the decodable "
                       "frames were analysed", err=True)
        if self.single:
            return
        if status == "failed":
            click.echo(f"failed  {_with_source(str(job.source), detail)}", err=True)
        else:
            click.echo(f"{status:<7} {job.source}", err=True)

    def summarise(self, summary, single: bool) -> None:
        if single:
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
