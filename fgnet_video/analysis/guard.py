"""The output guard every command that writes goes through, before it touches anything: no
output may replace an input of the command, another output of it, a file of a finished
analysis (its table, run record, overlay, saved tracks or failure record, and the recording
it analysed, as its run record names them: the records beside each output and beside each
input are read, so `summarize out/x.csv -o in/x.mp4` is refused when out/x.json analysed
in/x.mp4), a link, a folder or a device, or lie outside --out-dir. A refusal is an
`OutputClash`: one line, exit status 2, nothing touched.

Paths are compared after resolving links and `..` (`os.path.realpath`) and, for files that
exist, by identity (device and inode), so a hard link or a second name is caught too. A unit
of `analyze` may replace the files its own run record lists (a rerun of that recording).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fgnet_video.analysis.sidecar import OutputPaths, finished_files
from fgnet_video.errors import OutputClash
from fgnet_video.paths import write_target_problem


@dataclass(frozen=True)
class PlannedUnit:
    """What one unit of a command will write: its input (None when it has none), its
    outputs, and, for an analysis, the run record it writes (the files that record lists
    are its own to replace)."""

    source: Path | None
    outputs: Sequence[Path]
    record: Path | None = None


def single_outputs(table: str | os.PathLike, overlay: bool | str | os.PathLike,
                   tracks: bool) -> OutputPaths:
    """The outputs of one analysis written to `table` (`OutputPaths.for_table`); a named
    overlay outside the table's folder is refused (OutputClash): run records name the files
    beside them only, so it could be neither protected nor found."""
    paths = OutputPaths.for_table(table, overlay, tracks)
    if paths.overlay is not None and (os.path.realpath(paths.overlay.parent)
                                      != os.path.realpath(paths.table.parent)):
        raise OutputClash(f"--overlay {paths.overlay}: the overlay goes in the table's "
                          f"folder, where its run record can name it (records name no "
                          f"file elsewhere): give --overlay "
                          f"{paths.table.parent / paths.overlay.name}")
    return paths


def analysis_unit(source: Path, outputs: OutputPaths) -> PlannedUnit:
    """What one analysis of `source` writes: its files and its failure record (planned like
    the others), with its run record (whose files it may replace)."""
    return PlannedUnit(source, [*outputs.finals(), outputs.failure_record],
                       record=outputs.sidecar)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _check_target(output: Path) -> None:
    """A place we may write: absent, or a regular file (not a link, device, FIFO, folder)."""
    problem = write_target_problem(output)
    if problem is not None:
        raise OutputClash(f"{output}: {problem}")


def check_outputs(units: Iterable[PlannedUnit | tuple[Path | None, Sequence[Path]]],
                  out_dir: str | os.PathLike | None = None,
                  extra_inputs: Iterable[Path] = ()) -> None:
    """Refuse (OutputClash) a plan in which an output of `units` (PlannedUnits, or
    (input, outputs) pairs) is an input (of any unit, or of `extra_inputs`: weights,
    manifests, tracks), another output, a file of a finished analysis other than the unit's
    own, a non-regular file or a link, or lies outside `out_dir` (when given)."""
    units = [u if isinstance(u, PlannedUnit) else PlannedUnit(*u) for u in units]
    inputs_by_path: dict[str, Path] = {}
    inputs_by_id: dict[tuple[int, int], Path] = {}
    for source in [u.source for u in units if u.source is not None] + list(extra_inputs):
        inputs_by_path[os.path.realpath(source)] = Path(source)
        identity = _identity(Path(source))
        if identity is not None:
            inputs_by_id[identity] = Path(source)
    root = os.path.realpath(out_dir) if out_dir is not None else None
    # the finished analyses in reach: those beside each output (below) and those beside each
    # input, whose records may name files elsewhere (the recording a table was made from)
    finished: dict[str, dict[str, Path]] = {}  # folder -> finished_files(folder)
    claimed: dict[str, Path] = {}  # realpath -> the run record claiming it
    for folder in {os.path.dirname(real) for real in inputs_by_path}:
        finished[folder] = finished_files(Path(folder))
        claimed.update(finished[folder])
    outputs: dict[str, Path] = {}
    for unit in units:
        own = os.path.realpath(unit.record) if unit.record is not None else None
        for output in map(Path, unit.outputs):
            real = os.path.realpath(output)
            if root is not None and os.path.commonpath([root, real]) != root:
                raise OutputClash(f"{output}: lies outside --out-dir {out_dir} (check the "
                                  "manifest's names)")
            _check_target(output)
            identity = _identity(output)
            source = inputs_by_path.get(real) or (inputs_by_id.get(identity) if identity
                                                  else None)
            if source is not None:
                raise OutputClash(f"{output}: would replace the input {source}; choose "
                                  "another output name")
            if real in outputs:
                raise OutputClash(f"{output}: two outputs of this run would be written there "
                                  f"(also {outputs[real]})")
            folder = os.path.dirname(real)
            if folder not in finished:
                finished[folder] = finished_files(Path(folder))
                claimed.update(finished[folder])
            record = claimed.get(real)
            if record is not None and os.path.realpath(record) != own:
                raise OutputClash(f"{output}: would replace a file of the analysis recorded in "
                                  f"{record}; choose another output name")
            outputs[real] = output
