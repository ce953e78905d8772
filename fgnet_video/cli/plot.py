"""`fgnet-video plot`: a picture of an analyze table, one panel per person."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("table", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True,
              help="Image to write: .png, .pdf or .svg.")
def plot(table, output) -> None:
    """Plot an analyze TABLE (CSV or Parquet): per person, AU activity and scores over time."""
    from fgnet_video.analysis.guard import check_outputs
    from fgnet_video.reports.plot import plot_table, save_plot

    check_outputs([(Path(table), [Path(output)])])
    figure = plot_table(table)
    save_plot(figure, output)
    click.echo(f"{len(figure.axes)} panels -> {output}", err=True)
