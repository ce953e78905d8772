"""Click options shared by several commands, defined once."""

from __future__ import annotations

import click

weights_option = click.option(
    "--weights", "-w", "weights", default="bp4d", show_default=True, metavar="NAME_OR_FILE",
    help="Known name (bp4d, disfa: downloaded once into the cache), a converted .safetensors "
         "file, or the release's model.pth (with --psp).")
offline_option = click.option(
    "--offline", is_flag=True, envvar="FGNET_VIDEO_OFFLINE",
    help="Never download weights (also FGNET_VIDEO_OFFLINE=1).")
psp_option = click.option(
    "--psp", type=click.Path(dir_okay=False), default=None, metavar="FILE",
    help="pSp encoder.pt: supplies latent_avg for a release model.pth.")
dataset_option = click.option(
    "--dataset", type=click.Choice(["bp4d", "disfa"], case_sensitive=False), default=None,
    help="AU set of a release model.pth (default bp4d); a converted file carries its own.")
features_option = click.option(
    "--features", default=None, metavar="GROUPS",
    help="Feature groups to use, e.g. 'early,middle' (the paper's '- Late' ablation, faster).")
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
precision_option = click.option(
    "--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"], case_sensitive=False),
    default="auto", show_default=True, help="Inference precision (auto: bf16 on GPU, fp32 on CPU).")
batch_size_option = click.option(
    "--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
    help="Faces per forward pass.")
