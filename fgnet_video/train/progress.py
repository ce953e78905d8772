"""Rich progress bars that show on a terminal and stay silent in pipes, CI and non-zero ranks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Ticker:
    """Advances a progress task (or nothing when the display is off) and updates its fields."""

    def __init__(self, progress: Progress | None, task: int | None):
        self._progress = progress
        self._task = task

    def advance(self, steps: int = 1, **fields: object) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=steps, **fields)

    def update(self, **fields: object) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, **fields)


def stderr_console() -> Console:
    return Console(stderr=True)


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True, status: str = "", completed: int = 0
) -> Iterator[Ticker]:
    """A progress bar with a free-text `status` field; shown only when stderr is a terminal."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield Ticker(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, status=status)
        yield Ticker(progress, task)
