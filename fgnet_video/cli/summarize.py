"""`fgnet-video summarize`: per person and AU, frames, seconds, active share and events."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fgnet_video.cli.options import setting_option
from fgnet_video.options import EventSettings
from fgnet_video.settings import given

_SECONDS = click.FloatRange(min=0)


@click.command()
@click.argument("table", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Summary CSV to write, with its JSON (same numbers, nested per person) "
                   "beside it (default: the CSV on standard output).")
@setting_option(EventSettings, "min_event", "--min-event", type=_SECONDS, metavar="SECONDS")
@setting_option(EventSettings, "bridge", "--bridge", type=_SECONDS, metavar="SECONDS")
def summarize(table, output, **params) -> None:
    """Summarise an analyze TABLE (CSV or Parquet) per person and AU."""
    from fgnet_video.analysis.guard import check_outputs
    from fgnet_video.reports.summary import summarize as summarize_table
    from fgnet_video.reports.summary import write_summary

    settings = EventSettings(**given(params))
    if output is not None:
        output = Path(output)
        check_outputs([(Path(table), [output, output.with_suffix(".json")])])
    summary = summarize_table(table, min_event=settings.min_event, bridge=settings.bridge)
    if output is None:
        summary.to_csv(sys.stdout, index=False, float_format="%.6f")
        return
    written = write_summary(summary, output, settings)
    click.echo(f"{len(summary)} rows -> {', '.join(map(str, written))}", err=True)
