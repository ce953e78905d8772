"""Where a study stands: which inputs are done, which failed (and why), which are missing,
read from the outputs folder alone (sidecars and failure records), so it works for shards
run concurrently on many machines into one shared folder.

    done     the sidecar says finished and every output it records is beside it, unchanged
    failed   NAME.failed.json says why the last attempt failed (and no complete outputs)
    missing  neither (not run yet, running, or killed)

Without the list of inputs, every sidecar and failure record in the folder is reported; an
unreadable or incomplete sidecar counts as missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fgnet_video.analysis.sidecar import OutputPaths, read_failure_reason
from fgnet_video.errors import UserError
from fgnet_video.options import FAILED_SUFFIX, SIDECAR_SUFFIX
from fgnet_video.study.plan import expand_inputs


@dataclass
class StudyStatus:
    """Names (output names, relative to the folder) by state; failed with their reasons."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.failed and not self.missing


def _state(folder: Path, name: str) -> tuple[str, str | None]:
    sidecar = folder / f"{name}{SIDECAR_SUFFIX}"
    outputs = OutputPaths.from_sidecar(sidecar) if sidecar.is_file() else None
    if outputs is not None and outputs.complete():
        return "done", None
    reason = read_failure_reason(folder / f"{name}{FAILED_SUFFIX}")
    return ("missing", None) if reason is None else ("failed", reason)


def _names_in(folder: Path) -> list[str]:
    names = set()
    for path in folder.rglob(f"*{SIDECAR_SUFFIX}"):
        relative = str(path.relative_to(folder))
        if relative.endswith(FAILED_SUFFIX) and read_failure_reason(path) is not None:
            names.add(relative.removesuffix(FAILED_SUFFIX))
        elif OutputPaths.from_sidecar(path) is not None:
            names.add(relative.removesuffix(SIDECAR_SUFFIX))
    return sorted(names)


def study_status(out_dir: str | os.PathLike, inputs: Iterable[str] = ()) -> StudyStatus:
    """The state of every input of `inputs` (expanded as `analyze` does), or of everything
    found in `out_dir` when no inputs are given."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    inputs = list(inputs)
    names = [job.name for job in expand_inputs(inputs)] if inputs else _names_in(folder)
    status = StudyStatus()
    for name in names:
        state, reason = _state(folder, name)
        if state == "done":
            status.done.append(name)
        elif state == "failed":
            status.failed.append((name, reason or "failed"))
        else:
            status.missing.append(name)
    return status
