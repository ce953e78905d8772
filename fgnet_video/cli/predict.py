"""`fgnet-video predict`: AU scores for face images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fgnet_video.cli.options import model_options
from fgnet_video.options import ModelOptions
from fgnet_video.settings import given


@click.command()
@click.argument("images", nargs=-1, required=True)
@model_options
@click.option("--aligned", is_flag=True,
              help="The images are FFHQ-aligned 256x256 faces (other sizes are resized); "
                   "without it, the largest face of each photo is found and aligned.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="CSV to write (default: standard output).")
@click.option("--save-heatmaps", type=click.Path(dir_okay=False), default=None,
              help="npz with the clamped heatmaps (N, n_AUs, 128, 128) and image names.")
def predict(images, aligned, output, save_heatmaps, **params) -> None:
    """Predict AUs for IMAGES (files or folders of face images)."""
    from fgnet_video.analysis.guard import check_outputs
    from fgnet_video.media.images import expand_image_paths

    model_options = ModelOptions(**given(params))
    paths = expand_image_paths(images)  # bad paths are refused before torch loads
    written = [Path(p) for p in (output, save_heatmaps) if p is not None]
    check_outputs([(paths[0], written)] + [(path, []) for path in paths[1:]],
                  extra_inputs=model_options.files())

    from fgnet_video.analysis.stills import predict_images
    from fgnet_video.analysis.stills import save_heatmaps as write_heatmaps
    from fgnet_video.analysis.tables import write_table
    from fgnet_video.inference.engine import InferenceEngine

    engine = InferenceEngine.from_weights(**model_options.engine_kwargs())
    table, heatmaps = predict_images(paths, engine, aligned=aligned,
                                     keep_heatmaps=save_heatmaps is not None,
                                     note=lambda text: click.echo(text, err=True))
    if save_heatmaps:
        write_heatmaps(save_heatmaps, heatmaps, table["image"].tolist(), engine.loaded.aus)
    if output:
        write_table(table, output)
    else:
        table.to_csv(sys.stdout, index=False, float_format="%.6f")
