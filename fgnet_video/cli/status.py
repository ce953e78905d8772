"""`fgnet-video status`: done / failed / missing inputs of a study folder."""

from __future__ import annotations

import click


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.argument("inputs", nargs=-1)
def status(out_dir: str, inputs: tuple[str, ...]) -> None:
    """Report which inputs of the study in OUT_DIR are done, failed (with the reason) or
    missing; with INPUTS (as given to analyze) the missing ones are known too. Exit status 1
    while anything is failed or missing."""
    from fgnet_video.study.status import study_status

    report = study_status(out_dir, inputs)
    click.echo(f"{len(report.done)} done, {len(report.failed)} failed, "
               f"{len(report.missing)} missing")
    for name, reason in report.failed:
        click.echo(f"  failed   {name}: {reason}")
    for name in report.missing:
        click.echo(f"  missing  {name}")
    if not report.finished:
        raise SystemExit(1)
