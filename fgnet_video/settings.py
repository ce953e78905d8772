"""The building blocks of the options dataclasses: one place for each default and its help.

An options dataclass (`AnalyzeOptions`, `FaceSettings`, `TrainOptions`, ...) declares each
field with `setting(default, help)`. The library takes the dataclass (or its fields as
keyword arguments); the CLI builds its Click options from the same fields
(`fgnet_video.cli.options.setting_option`), with `default=None` so that an option the user
did not give is simply left out and the dataclass fills in its own default. This module
imports nothing heavy: the CLI reads it before torch is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import MISSING, Field, field, fields
from typing import Any

from fgnet_video.errors import UserError


def setting(default: Any = MISSING, help: str = "", *, factory: Any = MISSING) -> Any:
    """A dataclass field with its default (or default `factory`) and its help text."""
    if factory is not MISSING:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def setting_field(cls: type, name: str) -> Field:
    """The dataclass field `name` of `cls` (KeyError naming it when there is none)."""
    for candidate in fields(cls):
        if candidate.name == name:
            return candidate
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


def setting_default(cls: type, name: str) -> Any:
    """The default of field `name` of `cls` (MISSING for a required field)."""
    spec = setting_field(cls, name)
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


def setting_help(cls: type, name: str) -> str:
    """The help text of field `name` of `cls`."""
    return setting_field(cls, name).metadata.get("help", "")


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The values a user gave: without None (an option left out) and empty tuples (a
    repeatable option given no time)."""
    return {k: v for k, v in values.items() if v is not None and v != ()}


def split_settings(values: dict[str, Any], *groups: type | Iterable[str]) -> list[dict[str, Any]]:
    """Share keyword `values` out to `groups` (each a dataclass, standing for its field names,
    or a collection of names) by name: one dict per group, in order; a name no group has is a
    UserError that lists the known ones."""
    parts: list[dict[str, Any]] = [{} for _ in groups]
    owners = {name: k for k, group in enumerate(groups)
              for name in ([f.name for f in fields(group)] if isinstance(group, type) else group)}
    for name, value in values.items():
        if name not in owners:
            known = ", ".join(sorted(owners))
            raise UserError(f"unknown option {name!r} (known: {known})")
        parts[owners[name]][name] = value
    return parts
