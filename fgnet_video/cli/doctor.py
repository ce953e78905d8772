"""`fgnet-video doctor`: print the environment report (see fgnet_video.reports.doctor)."""

from __future__ import annotations

import click

from fgnet_video.errors import UserError

_MARKS = {True: click.style("ok", fg="green"), False: click.style("!!", fg="red"), None: "  "}


@click.command()
@click.option("--build", "build_kernels", is_flag=True,
              help="Build the compiled CUDA kernels now instead of on first use.")
@click.option("--arch", metavar="X.Y[,X.Y...]", default=None,
              help="With --build: build for these GPU architectures (e.g. 9.0,8.0) without "
                   "needing a GPU here (a cluster's login node), into the cache GPU nodes use.")
def doctor(build_kernels: bool, arch: str | None) -> None:
    """Report versions, the torch build (CPU-only or CUDA x.y) and whether it suits this
    machine's driver and GPUs, kernel build state, face model files and video libraries."""
    from fgnet_video.reports.doctor import environment_report, kernel_build_problem

    if arch is not None:
        from fgnet_video.kernels.build import build_ahead

        if not build_kernels:
            raise UserError("--arch goes with --build")
        click.echo(f"compiled kernels built for {arch} in {build_ahead(arch)}")
        return
    for section in environment_report(build_kernels):
        click.echo(click.style(section.title, bold=True))
        width = max(len(item.name) for item in section.items)
        for item in section.items:
            click.echo(f"  {_MARKS[item.ok]} {item.name:<{width}}  {item.value}")
    if build_kernels:
        problem = kernel_build_problem()
        if problem:
            raise UserError(problem)
        click.echo("compiled kernels are built and active for CUDA tensors")
