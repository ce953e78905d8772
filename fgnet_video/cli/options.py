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


class BatchSizeType(click.ParamType):
    """A positive integer or 'auto'."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        from fgnet_video.errors import UserError
        from fgnet_video.inference import parse_batch_size

        try:
            return parse_batch_size(value)
        except UserError as exc:
            self.fail(str(exc), param, ctx)


batch_size_option = click.option(
    "--batch-size", type=BatchSizeType(), default="auto", show_default=True,
    help="Faces per forward pass, or auto: on a GPU the largest batch (up to 64) that fits "
         "its free memory, 16 on the CPU.")


def speed_options(command):
    """--channels-last, --cuda-graphs, --compile: GPU speed switches, all off by default
    (passed to InferenceEngine as keyword options; see `engine_options`)."""
    for decorator in reversed((
        click.option("--channels-last", is_flag=True,
                     help="NHWC memory format for the encoder and interpreter convolutions."),
        click.option("--cuda-graphs", is_flag=True,
                     help="Replay captured CUDA graphs instead of launching every kernel "
                          "(CUDA only; a graph is captured per batch-size bucket)."),
        click.option("--compile", "compile_model", is_flag=True,
                     help="torch.compile the model (slow first batch per batch-size bucket)."),
    )):
        command = decorator(command)
    return command


def engine_options(channels_last: bool, cuda_graphs: bool, compile_model: bool) -> dict:
    """InferenceEngine keyword options from the `speed_options` flags."""
    return {"channels_last": channels_last, "cuda_graphs": cuda_graphs, "compile": compile_model}
