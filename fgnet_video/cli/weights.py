"""`fgnet-video weights`: import release checkpoints, inspect and create converted files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fgnet_video.cli.options import dataset_option


@click.group()
def weights() -> None:
    """Manage FG-Net checkpoints."""


@weights.command("import")
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.option("--psp", type=click.Path(dir_okay=False), default=None,
              help="pSp encoder.pt (needed for a release model.pth: its latent_avg).")
@click.option("--stylegan", type=click.Path(dir_okay=False), default=None,
              help="StyleGAN2 .pt whose g_ema replaces a pSp file's decoder.")
@dataset_option
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Converted .safetensors file to write.")
def import_(model_file, psp, stylegan, dataset, output) -> None:
    """Convert a release model.pth (+ --psp encoder.pt) or a pSp encoder.pt to one file."""
    from fgnet_video.analysis.guard import check_outputs
    from fgnet_video.weights.checkpoints import load_model, save_converted

    check_outputs([(Path(model_file), [Path(output)])],
                  extra_inputs=[Path(p) for p in (psp, stylegan) if p is not None])
    loaded = load_model(model_file, psp=psp, stylegan=stylegan, dataset=dataset)
    save_converted(output, loaded.model, loaded.dataset, loaded.aus,
                   sources=loaded.metadata.get("sources"), extra={"kind": loaded.metadata["kind"]})
    click.echo(f"wrote {output} ({loaded.dataset}: {len(loaded.aus)} AUs)", err=True)


@weights.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the full metadata as JSON.")
def info(file, as_json) -> None:
    """Show what a converted file holds: AU set, sizes, sources."""
    from fgnet_video.weights.metadata import describe, read_converted_metadata

    meta = read_converted_metadata(file)
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    for key, value in describe(meta).items():
        if key == "sources":
            for role, source in value.items():
                click.echo(f"source {role}: {source.get('file')} sha256={source.get('sha256')}")
        else:
            click.echo(f"{key}: {value}")


@weights.command("init")
@click.option("--preset", "preset_name", type=click.Choice(["tiny", "full"]), default="tiny",
              show_default=True, help="Model size.")
@dataset_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False))
def init(preset_name, dataset, seed, output) -> None:
    """Write randomly initialised weights (for tests, benchmarks, training from scratch)."""
    from fgnet_video.analysis.guard import check_outputs
    from fgnet_video.aus import DEFAULT_DATASET, au_set
    from fgnet_video.model.config import preset
    from fgnet_video.model.init import random_model
    from fgnet_video.weights.checkpoints import save_converted

    check_outputs([(None, [Path(output)])])

    name = (dataset or DEFAULT_DATASET).lower()
    model = random_model(preset(preset_name), seed=seed)
    save_converted(output, model, name, au_set(name),
                   extra={"kind": "random", "preset": preset_name, "seed": seed})
    click.echo(f"wrote {output} (random {preset_name} FG-Net, {name})", err=True)


@weights.command("download")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--force", is_flag=True,
              help="Discard the cached files and their recorded checksums, then fetch again.")
@click.option("--offline", is_flag=True,
              help="Do not download (also FGNET_VIDEO_OFFLINE=1): only convert release files "
                   "already placed in the cache.")
def download(names, force, offline) -> None:
    """Fetch and convert known weights into the cache ahead of use: bp4d, disfa or all.

    Prints the path of each converted file.
    """
    from fgnet_video.weights.store import ensure_weights

    for path in ensure_weights(names, offline=offline or None, force=force):
        click.echo(str(path))
