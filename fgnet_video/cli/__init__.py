"""The `fgnet-video` command group. Commands only parse options and call the library."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback

import click

from fgnet_video.errors import (
    Terminated,
    UserError,
    error_line,
    raise_on_sigterm,
    warnings_as_lines,
)
from fgnet_video.version import __version__


class _Group(click.Group):
    """Click group that turns user errors into one stderr line and exit code 1.

    `--verbose` (or FGNET_VIDEO_VERBOSE=1) prints the traceback as well, and Python's own
    warning format; without it every warning is one `fgnet-video: warning: ...` line.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("fgnet-video: interrupted", err=True)
            _exit_if_device_busy(130)
            sys.exit(130)
        except Terminated:
            click.echo("fgnet-video: stopped (SIGTERM)", err=True)
            _exit_if_device_busy(143)
            sys.exit(143)
        except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            message = error_line(exc)
            if not isinstance(exc, (UserError, OSError)):
                message += " (run with --verbose for details)"
            click.echo(f"fgnet-video: error: {message}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))


def _exit_if_device_busy(code: int) -> None:
    """Leave at once (os._exit) when a device thread (the CNN's detections, a study's face
    networks) is still computing a batch nobody will use
    (`fgnet_video.face.device_detections.busy`): the interpreter's normal
    end would abort under it. Everything that holds files has unwound by now."""
    module = sys.modules.get("fgnet_video.face.device_detections")
    if module is not None and module.busy():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fgnet-video")
@click.option("--verbose", "-v", is_flag=True, envvar="FGNET_VIDEO_VERBOSE",
              help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Facial action unit detection in video with FG-Net."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if threading.current_thread() is threading.main_thread():
        raise_on_sigterm()
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    else:
        warnings_as_lines()


def _register() -> None:
    from fgnet_video.cli.analyze import analyze
    from fgnet_video.cli.doctor import doctor
    from fgnet_video.cli.evaluate import evaluate
    from fgnet_video.cli.plot import plot
    from fgnet_video.cli.predict import predict
    from fgnet_video.cli.preprocess import preprocess
    from fgnet_video.cli.status import status
    from fgnet_video.cli.summarize import summarize
    from fgnet_video.cli.train import train
    from fgnet_video.cli.weights import weights

    for command in (analyze, status, summarize, plot, predict, weights, train, evaluate,
                    doctor, preprocess):
        main.add_command(command)


_register()
