"""Click options shared by several commands, defined once.

`setting_option` makes a Click option from a field of an options dataclass: its default and
help come from the field (`fgnet_video.settings.setting`), the option defaults to None, and
`fgnet_video.settings.given` drops the options a user left out, so the dataclass is the one
source of every default.
"""

from __future__ import annotations

from dataclasses import MISSING

import click

from fgnet_video.aus import AU_SETS
from fgnet_video.options import PRECISION_NAMES, ModelOptions, parse_count
from fgnet_video.settings import setting_default, setting_help


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def setting_option(cls: type, name: str, *decls: str, show_default: bool = True,
                   **click_kwargs):
    """A Click option for field `name` of options dataclass `cls` (decls: its flags; the
    parameter name is `name`). Help and default come from the field; the option's own default
    is None ('not given'), and the default is shown in the help when there is one."""
    help_text = setting_help(cls, name)
    default = setting_default(cls, name)
    if show_default and default is not MISSING and default is not None and default != ():
        help_text = f"{help_text}  [default: {_shown(default)}]"
    click_kwargs.setdefault("default", None)
    return click.option(*decls, name, help=help_text, **click_kwargs)

class CountType(click.ParamType):
    """A positive integer or 'auto' (`fgnet_video.options.parse_count`)."""

    name = "N|auto"

    def __init__(self, option: str):
        self.option = option

    def convert(self, value, param, ctx):
        from fgnet_video.errors import UserError

        try:
            return parse_count(value, self.option)
        except UserError as exc:
            self.fail(str(exc), param, ctx)


dataset_option = setting_option(ModelOptions, "dataset", "--dataset",
                                type=click.Choice(sorted(AU_SETS), case_sensitive=False))


def model_options(command):
    """The options of `ModelOptions` (weights, device, precision, batch size, speed
    switches), for every command that runs the model."""
    choice = click.Choice
    decorators = (
        setting_option(ModelOptions, "weights", "--weights", "-w", metavar="NAME_OR_FILE"),
        setting_option(ModelOptions, "psp", "--psp", type=click.Path(dir_okay=False),
                       metavar="FILE"),
        dataset_option,
        setting_option(ModelOptions, "features", "--features", metavar="GROUPS"),
        setting_option(ModelOptions, "offline", "--offline", is_flag=True, show_default=False),
        setting_option(ModelOptions, "device", "--device"),
        setting_option(ModelOptions, "precision", "--precision",
                       type=choice(PRECISION_NAMES, case_sensitive=False)),
        setting_option(ModelOptions, "batch_size", "--batch-size",
                       type=CountType("--batch-size")),
        setting_option(ModelOptions, "channels_last", "--channels-last", is_flag=True),
        setting_option(ModelOptions, "cuda_graphs", "--cuda-graphs", is_flag=True),
        setting_option(ModelOptions, "compile", "--compile", is_flag=True),
    )
    for decorator in reversed(decorators):
        command = decorator(command)
    return command
