"""What every operator command shows while it runs: its progress, and its exit status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, Protocol

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

if TYPE_CHECKING:
    from currencies_ops.target import Target

EXIT_CLEAN, EXIT_DIFFERENT, EXIT_UNCHECKED = 0, 1, 2
"""Done and clean; done with differences or leftovers; could not run."""


class Progress(Protocol):
    """Where a run says how far it is (a progress bar, or nothing)."""

    def begin(self, what: str, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...


class Quiet:
    """No progress shown (--json, tests)."""

    def begin(self, what: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


class Bar:
    """A run's phases on a rich progress bar; totals may be approximate (DynamoDB's ItemCount)."""

    def __init__(self, progress: RichProgress) -> None:
        self._progress = progress
        self._task: int | None = None

    def begin(self, what: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=self._progress.tasks[self._task].completed)
        self._task = self._progress.add_task(what, total=total)

    def advance(self, amount: int) -> None:
        assert self._task is not None, "begin() comes first"
        task = self._progress.tasks[self._task]
        if task.total is not None and task.completed + amount > task.total:
            self._progress.update(self._task, total=task.completed + amount)
        self._progress.advance(self._task, amount)


@contextmanager
def progress_bar(console: Console, as_json: bool, target: Target, doing: str) -> Iterator[Bar | None]:
    """A progress bar on stderr after a line saying what runs where; none for --json."""
    if as_json:
        yield None
        return
    console.print(f"{doing} {escape(target.describe())}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with RichProgress(*columns, console=console, transient=True) as progress:
        yield Bar(progress)


def fail(console: Console, as_json: bool, what: str, message: str) -> NoReturn:
    """End a command that could not run: one sentence (or `{"error": ...}` with --json), exit status 2."""
    if as_json:
        click.echo(json.dumps({"error": message}))
    else:
        console.print(f"[red]could not {what}:[/red]", escape(message))
    raise SystemExit(EXIT_UNCHECKED)
