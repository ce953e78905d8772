"""`fgnet-video preprocess`: align faces of images, folders and videos for training."""

from __future__ import annotations

from pathlib import Path

import click

from fgnet_video.cli.options import setting_option
from fgnet_video.options import SamplingSettings
from fgnet_video.settings import given


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to fill, e.g. data/BP4D (aligned_images/, "
                   "aligned_landmarks/, no_face.txt).")
@setting_option(SamplingSettings, "fps", "--fps", type=float)
@setting_option(SamplingSettings, "start", "--start", type=float)
@setting_option(SamplingSettings, "end", "--end", type=float)
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default one; one per CPU core is a good choice).")
def preprocess(sources, output, **params) -> None:
    """Align the faces in SOURCES (images, folders, videos) the way FG-Net's data was made.

    Writes OUTPUT/aligned_images/<path>.jpg (256x256 FFHQ crop) and
    OUTPUT/aligned_landmarks/<path>.npy (68x2 landmarks on the crop), mirroring the input
    tree; a video becomes <video name>/<frame index>.jpg. Inputs without a face are listed
    in OUTPUT/no_face.txt (an image by its relative path, a video frame as
    <video file>/<frame index>). Reruns skip finished files and listed inputs.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from fgnet_video.train.preprocess import preprocess as run

    console = Console(stderr=True)
    with Progress("[bold]preprocess", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("preprocess", total=None)
        report = run(sources, output, **given(params),
                     on_total=lambda n: progress.update(task, total=n),
                     on_progress=lambda k: progress.advance(task, k))
    click.echo(f"{report.written} aligned, {report.skipped} already done, "
               f"{len(report.no_face)} without a face -> {output}")
    if report.no_face:
        shown = ", ".join(report.no_face[:5]) + (", ..." if len(report.no_face) > 5 else "")
        click.echo(f"no face in: {shown} (all listed in {report.no_face_file})")
    for line in report.truncated:
        click.echo(f"warning: truncated video {line}", err=True)
