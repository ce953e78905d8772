"""`fgnet-video preprocess`: align faces of images, folders and videos for training."""

from __future__ import annotations

import warnings
from pathlib import Path

import click


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to fill, e.g. data/BP4D (aligned_images/, "
                   "aligned_landmarks/, no_face.txt).")
@click.option("--fps", type=float, default=None,
              help="Videos: keep at most this many frames per second (by timestamp).")
@click.option("--start", type=float, default=None, help="Videos: first second to keep.")
@click.option("--end", type=float, default=None, help="Videos: stop at this second.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (one per CPU core is a good choice).")
def preprocess(sources, output, fps, start, end, jobs) -> None:
    """Align the faces in SOURCES (images, folders, videos) the way FG-Net's data was made.

    Writes OUTPUT/aligned_images/<path>.jpg (256x256 FFHQ crop) and
    OUTPUT/aligned_landmarks/<path>.npy (68x2 landmarks on the crop), mirroring the input
    tree; a video becomes <video name>/<frame index>.jpg. Reruns skip finished files.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from fgnet_video.preprocess import preprocess as run
    from fgnet_video.video import TruncatedVideoWarning

    warnings.simplefilter("ignore", TruncatedVideoWarning)  # reported below, once per video
    console = Console(stderr=True)
    with Progress("[bold]preprocess", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("preprocess", total=None)
        report = run(sources, output, fps=fps, start=start, end=end, jobs=jobs,
                     on_total=lambda n: progress.update(task, total=n),
                     on_progress=lambda k: progress.advance(task, k))
    click.echo(f"{report.written} aligned, {report.skipped} already done, "
               f"{len(report.no_face)} without a face -> {output}")
    if report.no_face:
        shown = ", ".join(report.no_face[:5]) + (", ..." if len(report.no_face) > 5 else "")
        click.echo(f"no face in: {shown} (all listed in {report.no_face_file})")
    for line in report.truncated:
        click.echo(f"warning: truncated video {line}", err=True)
