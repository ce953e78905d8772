"""`fgnet-video train`: fine-tune or train FG-Net on labeled aligned faces."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from fgnet_video.cli.options import device_option, features_option
from fgnet_video.errors import UserError

_PATH = click.Path(dir_okay=False, path_type=str)


@click.command("train")
@click.option("--dataset", type=click.Choice(["bp4d", "disfa", "custom"], case_sensitive=False),
              help="AU set and label conventions; custom takes the AUs from the CSV header.")
@click.option("--data", type=click.Path(file_okay=False, path_type=str),
              help="Data root holding <DATASET>/aligned_images, aligned_landmarks, labels.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Run folder: checkpoints, resume state, metrics.jsonl.")
@click.option("--fold", default=0, show_default=True, help="Fold of the default label CSVs.")
@click.option("--train-csv", type=_PATH,
              help="Training labels [<DATASET>/labels/<fold>/train.csv].")
@click.option("--val-csv", type=_PATH,
              help="Validation labels [<DATASET>/labels/<fold>/test.csv].")
@click.option("--val/--no-val", "validate", default=True, show_default=True,
              help="Validation F1 after each epoch (best checkpoint kept).")
@click.option("--weights", type=_PATH, help="Fine-tune this FG-Net checkpoint.")
@click.option("--psp", type=_PATH, help="pSp encoder.pt to start from (or the latent_avg "
              "source of a release model.pth given with --weights).")
@click.option("--stylegan", type=_PATH, help="StyleGAN2 .pt whose g_ema replaces pSp's decoder.")
@click.option("--preset", type=click.Choice(["tiny", "full"]), help="Random initialisation.")
@features_option
@click.option("--lr", default=5e-5, show_default=True, help="AdamW learning rate.")
@click.option("--weight-decay", default=5e-4, show_default=True, help="AdamW weight decay.")
@click.option("--beta1", default=0.9, show_default=True, help="AdamW beta1.")
@click.option("--beta2", default=0.999, show_default=True, help="AdamW beta2.")
@click.option("--grad-clip", default=0.1, show_default=True, help="Gradient-norm clip.")
@click.option("--batch-size", default=16, show_default=True,
              help="Global batch (split across torchrun processes).")
@click.option("--epochs", default=15, show_default=True)
@click.option("--iterations", default=500, show_default=True, help="Iterations per epoch.")
@click.option("--dropout", default=0.1, show_default=True, help="Interpreter dropout.")
@click.option("--seed", default=0, show_default=True)
@click.option("--sigma", default=20.0, show_default=True,
              help="Target Gaussian sigma in 128-px heatmap units.")
@click.option("--subset", type=int, help="Train on N frames drawn by --seed.")
@click.option("--val-subset", type=int, help="Validate on N frames drawn by --seed.")
@click.option("--positive-threshold", type=float,
              help="Label value that counts as active [disfa 2, else 1].")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"],
              case_sensitive=False), default="auto", show_default=True,
              help="Training precision (auto: bf16, or fp16 with loss scaling, on GPU; fp32 on"
              " CPU).")
@click.option("--deterministic", is_flag=True, help="Deterministic GPU kernels (slower).")
@click.option("--on-bad-data", type=click.Choice(["skip", "fail"]), default="fail",
              show_default=True, help="Skip (and count) or stop at a bad frame.")
@click.option("--unlabeled", multiple=True, type=click.Path(path_type=str),
              help="Unlabeled video, or preprocessed folder (aligned_images/), for the"
              " auxiliary tasks (repeatable). Videos are aligned once into OUT/unlabeled/.")
@click.option("--aux", default="", show_default=False,
              help="Auxiliary tasks on the unlabeled frames: inpaint, flow or inpaint,flow"
              " [off].")
@click.option("--aux-weight-inpaint", default=1.0, show_default=True,
              help="Weight of the RoI inpainting L1 loss.")
@click.option("--aux-weight-flow", default=0.1, show_default=True,
              help="Weight of the flow end-point-error loss.")
@click.option("--aux-batch", type=click.IntRange(min=1),
              help="Unlabeled frames per iteration [--batch-size].")
@click.option("--aux-masks", default=3, show_default=True,
              help="Inpainting: squares masked per face, at random AU ROI points.")
@click.option("--aux-mask-size", default=40.0, show_default=True,
              help="Inpainting: side of a masked square in 256-px face pixels.")
@click.option("--aux-flow-gap", default=0.1, show_default=True,
              help="Flow: seconds between the two frames of a pair.")
@click.option("--unlabeled-fps", type=float,
              help="Frame rate of preprocessed folders without videos.json (frame files"
              " named by frame index).")
@device_option
@click.option("--num-workers", default=4, show_default=True, help="Data loading processes.")
@click.option("--eval-batch-size", default=32, show_default=True)
@click.option("--max-iterations", type=int,
              help="Stop (resumable) after this many iterations in this invocation.")
@click.option("--save-every", default=0, show_default=True,
              help="Also save the resume state every N iterations (0: at epoch ends).")
@click.option("--log-every", default=10, show_default=True, help="Iterations per log record.")
@click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped.")
@click.pass_context
def train(ctx: click.Context, **params: object) -> None:
    """Train FG-Net (the release's recipe by default); multi-GPU with
    `torchrun --nproc_per_node N -m fgnet_video train ...`."""
    from fgnet_video.train.loop import train as run_training
    from fgnet_video.train.options import TrainOptions
    from fgnet_video.train.runlog import read_run_options

    for name in ("data", "train_csv", "val_csv", "weights", "psp", "stylegan"):
        if params[name] is not None:
            params[name] = str(Path(str(params[name])).resolve())
    params["unlabeled"] = tuple(str(Path(str(p)).resolve()) for p in params["unlabeled"])
    if params["resume"]:
        given = {name: value for name, value in params.items()
                 if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
        options = read_run_options(params["out"]).resumed_with(given)
    else:
        if not params["dataset"] or not params["data"]:
            raise UserError("--dataset and --data are required (or --resume an existing run)")
        options = TrainOptions(**params)
    summary = run_training(options)
    click.echo(summary.line(), err=True)
