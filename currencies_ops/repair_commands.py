"""The repair commands' command line (`currencies backfill`, `currencies replay`); registered on `currencies`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from chalicelib.api.currency import ClientError
from chalicelib.api.history import parse_moment
from currencies_ops.backfill import MAX_SEGMENTS, BackfillError, default_checkpoint_path
from currencies_ops.backfill import backfill as run_backfill
from currencies_ops.console import EXIT_CLEAN, EXIT_DIFFERENT, fail, progress_bar
from currencies_ops.metrics import OperationMetrics
from currencies_ops.replay import ReplayError
from currencies_ops.replay import replay as run_replay
from currencies_ops.target import Target, TargetError, resolve

_CONTEXT = {"help_option_names": ["-h", "--help"]}


def _target_options(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--json", "as_json", is_flag=True, help="Print one JSON object, no progress bar.")(
            command
        )
        command = click.option("--local", is_flag=True, help=f"{action} the `currencies up` running on this machine.")(
            command
        )
        return click.option(
            "--stage", metavar="NAME", help=f"{action} this stage of .chalice/config.json (AWS credentials: yours)."
        )(command)

    return decorate


@click.command(context_settings=_CONTEXT)
@_target_options("Backfill")
@click.option(
    "--segments",
    type=click.IntRange(1, MAX_SEGMENTS),
    help="Parallel scan segments, one thread each [default: the checkpoint's, else 4].",
)
@click.option(
    "--resume/--restart",
    default=True,
    show_default=True,
    help="Continue from the checkpoint of an interrupted run, or start over from the first item.",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint file [default: ~/.cache/currencies/backfill-<table>-<hash>.json].",
)
def backfill(
    *,
    stage: str | None,
    local: bool,
    as_json: bool,
    segments: int | None,
    resume: bool,
    checkpoint_path: Path | None,
) -> None:
    """Index every item of the DynamoDB table: a table older than the pipeline, or items written outside the API.

    Scans the table in parallel segments and writes the documents the consumer would write,
    with versions that any live change beats, so it can run while traffic flows. Items the API
    cannot read are skipped and listed. Ctrl-C stops after the current pages; run it again to
    resume where it stopped. Without --stage or --local the deployment comes from the
    CURRENCIES_* environment variables.

    Exit status: 0 every item indexed (or skipped), 1 stopped or some items failed (run again
    to resume), 2 could not run.

    \b
    Examples:
      currencies backfill --local
      currencies backfill --stage prod --segments 16
      currencies backfill --stage prod --restart --json
    """
    started = time.monotonic()
    console = Console(stderr=True)
    target = _resolve(console, as_json, stage, local)
    with OperationMetrics("backfill", target.settings.pushgateway_url) as metrics:
        try:
            with progress_bar(console, as_json, target, "backfilling") as progress:
                report = run_backfill(
                    target,
                    metrics,
                    segments=segments,
                    restart=not resume,
                    checkpoint_path=checkpoint_path or default_checkpoint_path(target),
                    progress=progress,
                )
        except BackfillError as error:
            metrics.finish("failed")
            fail(console, as_json, "backfill", str(error))
        finished = report.complete and report.failed == 0
        metrics.finish("complete" if finished else "interrupted" if report.interrupted else "failed")
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"target": target.describe(), **report.to_json(), "seconds": round(seconds, 3)}))
    else:
        out = Console()
        for symbol, reason in report.skipped_items:
            out.print(f"[yellow]skipped[/yellow] {escape(symbol)}: {escape(reason)}")
        for what, error in report.failures:
            out.print(f"[red]failed[/red] {escape(what)}: {escape(error)}")
        rate = report.scanned / seconds if seconds else 0.0
        verdict = (
            "[green]complete[/green]"
            if finished
            else f"[yellow]stopped[/yellow]: run again to resume from {escape(str(report.checkpoint))}"
        )
        out.print(
            f"{verdict}: {report.scanned} items scanned in {seconds:.1f} s ({rate:.0f}/s) over {report.segments} "
            f"segments{' (resumed)' if report.resumed else ''}: {report.written} written, {report.current} already "
            f"current, {report.skipped} skipped, {report.failed} failed; {report.events_written} events written"
        )
    raise SystemExit(EXIT_CLEAN if finished else EXIT_DIFFERENT)


@click.command(context_settings=_CONTEXT)
@_target_options("Replay on")
@click.option(
    "--into-new-index",
    is_flag=True,
    help="Build a new rates index, then move the rates name (an alias) onto it in one atomic step.",
)
@click.option("--from", "start", metavar="TIME", help="Replay only events at or after this ISO 8601 time.")
@click.option("--to", "end", metavar="TIME", help="Replay only events at or before this ISO 8601 time.")
def replay(
    *, stage: str | None, local: bool, as_json: bool, into_new_index: bool, start: str | None, end: str | None
) -> None:
    """Rebuild the current-state (rates) index from the events index, e.g. after a mapping change.

    Each symbol's newest event is written again as its current-state document, with its version,
    so a live change newer than it always wins. In place, it fills in missing and older documents;
    --into-new-index builds `<rates>-<timestamp>` from the current template and then makes `<rates>`
    an alias of it (deleting what the name meant before) in one atomic request, so readers never
    see it empty, and replaces stray or hand-written documents too. --from/--to replay only that
    window, in place, and copy its events into a fresh `<events>-<timestamp>` index.

    Exit status: 0 replayed, 1 some documents failed (nothing swapped), 2 could not run.

    \b
    Examples:
      currencies replay --local
      currencies replay --stage prod --into-new-index
      currencies replay --stage prod --from 2026-03-01T00:00:00Z --to 2026-03-02T00:00:00Z
    """
    started = time.monotonic()
    console = Console(stderr=True)
    window = (_moment(start, "--from"), _moment(end, "--to"))
    if window[0] and window[1] and window[0] > window[1]:
        raise click.BadParameter("--from must not be after --to")
    if into_new_index and (start or end):
        raise click.UsageError("--into-new-index rebuilds from every event; it does not take --from/--to")
    target = _resolve(console, as_json, stage, local)
    with OperationMetrics("replay", target.settings.pushgateway_url) as metrics:
        try:
            with progress_bar(console, as_json, target, "replaying") as progress:
                report = run_replay(
                    target, metrics, into_new_index=into_new_index, start=window[0], end=window[1], progress=progress
                )
        except ReplayError as error:
            metrics.finish("failed")
            fail(console, as_json, "replay", str(error))
        metrics.finish("complete" if report.complete else "failed")
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"target": target.describe(), **report.to_json(), "seconds": round(seconds, 3)}))
    else:
        out = Console()
        for what, error in report.problems:
            out.print(f"[red]problem[/red] {escape(what)}: {escape(error)}")
        verdict = "[green]replayed[/green]" if report.complete else "[red]incomplete[/red]"
        out.print(
            f"{verdict}: {report.events_read} events, {report.symbols} symbols into {escape(report.rates_index)} in "
            f"{seconds:.1f} s: {report.written} written, {report.current} already current or newer, "
            f"{report.skipped} skipped, {report.failed} failed"
        )
        if report.swapped is not None:
            out.print(
                f"{escape(target.settings.rates_index)} now names {escape(report.rates_index)} "
                f"(replaced and deleted: {escape(', '.join(report.swapped))}); {report.caught_up} caught up"
            )
        elif into_new_index:
            out.print(f"nothing swapped: {escape(report.rates_index)} is left for inspection")
        if report.events_copy:
            out.print(f"{report.copied} events copied into {escape(report.events_copy)}")
    raise SystemExit(EXIT_CLEAN if report.complete else EXIT_DIFFERENT)


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text, name)
    except ClientError as error:
        raise click.BadParameter(str(error), param_hint=name) from None


def _resolve(console: Console, as_json: bool, stage: str | None, local: bool) -> Target:
    try:
        return resolve(stage, local)
    except TargetError as error:
        fail(console, as_json, "run", str(error))
