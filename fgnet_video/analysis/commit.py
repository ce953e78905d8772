"""A recording's outputs as one unit: committed together, or not at all.

Each output is written to its partial name (`fgnet_video.atomic.temporary_name`: hidden,
in the same folder, with the writer's process id and host). `OutputUnit.commit()` then puts
them in place in order, the last one (the sidecar, which marks the unit complete) last:

    for each output: move the previous file aside (a hidden backup), rename partial -> final
    all renamed: delete the backups
    any step failed: undo every step so far (new files removed, backups restored), re-raise

A process killed in the middle leaves finals that no longer match the sidecar beside them (the
sidecar records each output's size and hash, see `fgnet_video.analysis.sidecar`), so
the next run sees the unit as incomplete, and `remove_stale_partials` deletes the partials and
backups whose process is gone.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from fgnet_video.atomic import HOST_TAG_ALPHABET, host_tag, owner_tag, temporary_name

_OWNER_TAG = rf"\.(?:partial|backup)-(\d+)(?:@([{HOST_TAG_ALPHABET}]+))?"
_OWNER = re.compile(_OWNER_TAG)
# A partial or backup of another machine's process (shared storage) is removed only once it
# is this old: its writer cannot be checked from here, and a live writer touches its files.
STALE_PARTIAL_S = 24 * 3600


def backup_name(path: Path) -> Path:
    """Where the previous `path` waits while a unit is committed: hidden, with our
    `owner_tag`."""
    return path.with_name(f".{path.stem}.backup-{owner_tag()}{path.suffix}")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class OutputUnit:
    """The outputs of one recording, committed together (see the module docstring).

    `finals`: the output paths in commit order; the last one marks the unit complete.
    """

    def __init__(self, finals: Sequence[Path]):
        self.finals = [Path(p) for p in finals]
        self._dropped: set[Path] = set()

    def drop(self, final: Path) -> None:
        """This unit has no new `final` (an output that failed on its own, such as an overlay):
        commit moves a previous `final` aside and deletes it with the other backups, so no
        output of an older run stays beside the new ones."""
        self._dropped.add(Path(final))

    def partial(self, final: Path) -> Path:
        """The partial name the output `final` is written to."""
        return temporary_name(final)

    def commit(self) -> None:
        """Rename every partial into place, last output last; on any failure undo every
        step, leaving the previous files as they were, and re-raise."""
        done: list[tuple[Path, Path | None]] = []  # (final, its backup or None)
        try:
            for final in self.finals:
                backup = None
                if final.exists():
                    backup = backup_name(final)
                    os.replace(final, backup)
                    os.utime(backup)  # fresh: another host must not take it for stale
                done.append((final, backup))
                if final not in self._dropped:
                    os.replace(self.partial(final), final)
        except BaseException:
            self._undo(done)
            raise
        for _, backup in done:
            if backup is not None:
                backup.unlink(missing_ok=True)

    def _undo(self, done: list[tuple[Path, Path | None]]) -> None:
        for final, backup in reversed(done):
            if backup is not None and backup.exists():
                os.replace(backup, final)
            elif backup is None and not self.partial(final).exists():
                final.unlink(missing_ok=True)  # renamed into place by us: remove it
        self.discard()

    def discard(self) -> None:
        """Remove every partial of the unit (after a failure)."""
        for final in self.finals:
            self.partial(final).unlink(missing_ok=True)


def _stale(candidate: Path, here: str) -> bool:
    """Whether the partial or backup `candidate` was left by writers that are gone: every
    owner on this host is no longer running, and one on another host (or an unknown one)
    has not touched it for STALE_PARTIAL_S."""
    owners = _OWNER.findall(candidate.name)
    if all(host in ("", here) for _, host in owners):  # no host: named before hosts were
        return not any(process_alive(int(pid)) for pid, _ in owners)
    try:
        return time.time() - candidate.stat().st_mtime > STALE_PARTIAL_S
    except OSError:
        return False


def remove_stale_partials(finals: Iterable[Path]) -> list[Path]:
    """Delete the partials and backups of `finals` left by processes that are gone (a run
    that was killed): on this host, when their process has ended; of another host, when
    older than STALE_PARTIAL_S (`_stale`). Returns what was removed."""
    here = host_tag()
    removed = []
    for final in finals:
        final = Path(final)
        if not final.parent.is_dir():
            continue
        pattern = re.compile(rf"\.+{re.escape(final.stem)}(?:{_OWNER_TAG})+"
                             rf"{re.escape(final.suffix)}")
        for candidate in final.parent.glob(f".*{final.suffix}"):
            if not pattern.fullmatch(candidate.name):
                continue
            if _stale(candidate, here):
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return removed
