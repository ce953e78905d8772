"""`fgnet-video evaluate`: per-AU F1, accuracy and support of a checkpoint on labeled frames.

The scoring options are the fields of `fgnet_video.train.options.EvaluateOptions`, which
holds their defaults and help; the command builds one from those given and calls
`fgnet_video.train.evaluate.evaluate_weights` for each `--weights`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from fgnet_video.aus import AU_SETS, LABEL_DATASETS
from fgnet_video.cli.options import setting_option
from fgnet_video.options import KNOWN_WEIGHTS_HELP, PRECISION_NAMES
from fgnet_video.settings import given
from fgnet_video.train.options import EvaluateOptions

_PATH = click.Path(dir_okay=False, path_type=str)
_option = partial(setting_option, EvaluateOptions)


@click.command("evaluate")
@click.option("--weights", "--checkpoint", "weights", required=True, multiple=True,
              metavar="NAME_OR_FILE",
              help=f"K{KNOWN_WEIGHTS_HELP[1:]} or checkpoint file; '{{fold}}' in a file name picks "
              "one per fold. Repeat to compare runs side by side.")
@click.option("--dataset", required=True,
              type=click.Choice(LABEL_DATASETS, case_sensitive=False),
              help="Labels to score against (a BP4D model on disfa is cross-dataset).")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Data root (label CSV paths are relative to it).")
@_option("fold", "--fold", type=int)
@_option("all_folds", "--all-folds", is_flag=True)
@_option("csvs", "--csv", multiple=True, type=_PATH)
@_option("psp", "--psp", type=_PATH, metavar="FILE")
@_option("model_dataset", "--model-dataset", type=click.Choice(sorted(AU_SETS)))
@_option("aus", "--aus", metavar="AUS")
@_option("batch_size", "--batch-size", type=int)
@_option("num_workers", "--num-workers", type=int)
@_option("device", "--device")
@_option("precision", "--precision",
         type=click.Choice(PRECISION_NAMES, case_sensitive=False))
@_option("on_bad_data", "--on-bad-data", type=click.Choice(["skip", "fail"]))
@_option("positive_threshold", "--positive-threshold", type=float)
@_option("offline", "--offline", is_flag=True)
@click.option("--json", "json_path", type=_PATH, help="Also write the scores as JSON here.")
def evaluate(weights: tuple[str, ...], dataset: str, data: str, json_path: str | None,
             **params: object) -> None:
    """Per-AU F1 x 100 (and their mean), accuracy and support; channels are matched to
    labels by AU number, so cross-dataset scores use the AUs both sets share. With several
    --weights, each is scored on the same frames and a table compares their F1 per AU."""
    from rich.console import Console

    from fgnet_video.atomic import write_json
    from fgnet_video.train.evaluate import comparison_table, evaluate_weights, results_table
    from fgnet_video.train.progress import stderr_console

    options = EvaluateOptions(**given(params))
    if json_path:
        from fgnet_video.analysis.guard import check_outputs

        check_outputs([(None, [Path(json_path)])],
                      extra_inputs=[Path(w) for w in weights if Path(w).is_file()])
    reports = [evaluate_weights(name, dataset, data, options) for name in weights]
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
