"""`fgnet-video train`: fine-tune or train FG-Net on labeled aligned faces.

Every option is a field of `fgnet_video.train.options.TrainOptions`, which holds its default
and help; the command builds the run's options from those given (`run_options`) and calls
`fgnet_video.train.loop.train`.
"""

from __future__ import annotations

from functools import partial

import click

from fgnet_video.aus import LABEL_DATASETS
from fgnet_video.cli.options import setting_option
from fgnet_video.options import PRECISION_NAMES
from fgnet_video.settings import given
from fgnet_video.train.options import TrainOptions

_PATH = click.Path(dir_okay=False, path_type=str)
_FOLDER = click.Path(file_okay=False, path_type=str)
_option = partial(setting_option, TrainOptions)


@click.command("train")
@_option("dataset", "--dataset",
         type=click.Choice(LABEL_DATASETS, case_sensitive=False))
@_option("data", "--data", type=_FOLDER)
@_option("out", "--out", required=True, type=_FOLDER)
@_option("fold", "--fold", type=int)
@_option("train_csv", "--train-csv", type=_PATH)
@_option("val_csv", "--val-csv", type=_PATH)
@_option("validate", "--val/--no-val")
@_option("weights", "--weights", metavar="NAME_OR_FILE")
@_option("psp", "--psp", type=_PATH)
@_option("stylegan", "--stylegan", type=_PATH)
@_option("preset", "--preset", type=click.Choice(["tiny", "full"]))
@_option("features", "--features", metavar="GROUPS")
@_option("lr", "--lr", type=float)
@_option("weight_decay", "--weight-decay", type=float)
@_option("beta1", "--beta1", type=float)
@_option("beta2", "--beta2", type=float)
@_option("grad_clip", "--grad-clip", type=float)
@_option("batch_size", "--batch-size", type=int)
@_option("epochs", "--epochs", type=int)
@_option("iterations", "--iterations", type=int)
@_option("dropout", "--dropout", type=float)
@_option("seed", "--seed", type=int)
@_option("sigma", "--sigma", type=float)
@_option("subset", "--subset", type=int)
@_option("val_subset", "--val-subset", type=int)
@_option("positive_threshold", "--positive-threshold", type=float)
@_option("precision", "--precision",
         type=click.Choice(PRECISION_NAMES, case_sensitive=False))
@_option("deterministic", "--deterministic", is_flag=True)
@_option("on_bad_data", "--on-bad-data", type=click.Choice(["skip", "fail"]))
@_option("unlabeled", "--unlabeled", multiple=True, type=click.Path(path_type=str))
@_option("aux", "--aux", show_default=False)
@_option("aux_weight_inpaint", "--aux-weight-inpaint", type=float)
@_option("aux_weight_flow", "--aux-weight-flow", type=float)
@_option("aux_batch", "--aux-batch", type=click.IntRange(min=1))
@_option("aux_masks", "--aux-masks", type=int)
@_option("aux_mask_size", "--aux-mask-size", type=float)
@_option("aux_flow_gap", "--aux-flow-gap", type=float)
@_option("unlabeled_fps", "--unlabeled-fps", type=float)
@_option("device", "--device")
@_option("num_workers", "--num-workers", type=int)
@_option("eval_batch_size", "--eval-batch-size", type=int)
@_option("max_iterations", "--max-iterations", type=int)
@_option("save_every", "--save-every", type=int)
@_option("log_every", "--log-every", type=int)
@_option("offline", "--offline", is_flag=True)
@_option("resume", "--resume", is_flag=True)
def train(**params: object) -> None:
    """Train FG-Net (the release's recipe by default); multi-GPU with
    `torchrun --nproc_per_node N -m fgnet_video train ...`."""
    from fgnet_video.train.loop import train as run_training
    from fgnet_video.train.runlog import run_options

    summary = run_training(run_options(given(params)))
    click.echo(summary.line(), err=True)
