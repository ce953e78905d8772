"""`fgnet-video evaluate`: per-AU F1, accuracy and support of a checkpoint on labeled frames."""

from __future__ import annotations

import click

from fgnet_video.cli.options import device_option, precision_option, psp_option
from fgnet_video.errors import UserError

_PATH = click.Path(dir_okay=False, path_type=str)


def _parse_aus(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part.strip().upper().removeprefix("AU")) for part in text.split(","))
    except ValueError:
        raise UserError(f"--aus takes AU numbers like 1,2,4 (got {text!r})") from None


@click.command("evaluate")
@click.option("--weights", "--checkpoint", "weights", required=True, multiple=True,
              help="Checkpoint; '{fold}' in the path picks one per fold. Repeat to compare"
              " runs side by side.")
@click.option("--dataset", required=True,
              type=click.Choice(["bp4d", "disfa", "custom"], case_sensitive=False),
              help="Labels to score against (a BP4D model on disfa is cross-dataset).")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Data root (label CSV paths are relative to it).")
@click.option("--fold", type=int, default=0, show_default=True, help="Fold's test.csv to score.")
@click.option("--all-folds", is_flag=True, help="Score folds 0, 1, 2 and average them.")
@click.option("--csv", "csvs", multiple=True, type=_PATH,
              help="Label CSV(s) to score instead of the folds' test.csv (repeatable).")
@psp_option
@click.option("--model-dataset", type=click.Choice(["bp4d", "disfa"]),
              help="AU set of a release model.pth [the evaluated dataset].")
@click.option("--aus", help="Score only these AUs, e.g. 1,2,4,6,12.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--num-workers", default=2, show_default=True, help="Data loading processes.")
@device_option
@precision_option
@click.option("--on-bad-data", type=click.Choice(["skip", "fail"]), default="fail",
              show_default=True)
@click.option("--positive-threshold", type=float,
              help="Label value that counts as active [disfa 2, else 1].")
@click.option("--json", "json_path", type=_PATH, help="Also write the scores as JSON here.")
def evaluate(weights: tuple[str, ...], dataset: str, data: str, fold: int, all_folds: bool,
             csvs: tuple[str, ...], psp: str | None, model_dataset: str | None, aus: str | None,
             batch_size: int, num_workers: int, device: str, precision: str, on_bad_data: str,
             positive_threshold: float | None, json_path: str | None) -> None:
    """Per-AU F1 x 100 (and their mean), accuracy and support; channels are matched to
    labels by AU number, so cross-dataset scores use the AUs both sets share. With several
    --weights, each is scored on the same frames and a table compares their F1 per AU."""
    from rich.console import Console

    from fgnet_video.atomic import write_json
    from fgnet_video.train.evaluate import comparison_table, evaluate_weights, results_table
    from fgnet_video.train.progress import stderr_console

    if csvs and all_folds:
        raise UserError("--csv and --all-folds exclude each other")
    reports = [evaluate_weights(
        path, dataset.lower(), data, folds=(0, 1, 2) if all_folds else (fold,), csvs=csvs,
        psp=psp, model_dataset=model_dataset, aus=_parse_aus(aus), batch_size=batch_size,
        num_workers=num_workers, device=device, precision=precision, on_bad_data=on_bad_data,
        positive_threshold=positive_threshold,
    ) for path in weights]
    for report in reports:
        if report["skipped"]:
            path, reason = report["skipped"][0]
            stderr_console().print(f"[yellow]warning:[/] skipped {len(report['skipped'])} bad"
                                   f" frame(s); first: {path}: {reason}", highlight=False)
        Console().print(results_table(report))
    if len(reports) > 1:
        Console().print(comparison_table(reports))
    if json_path:
        write_json(json_path, reports[0] if len(reports) == 1 else {"runs": reports})
