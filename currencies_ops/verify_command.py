"""The operator commands' command line; `currencies_local.cli` registers them on the `currencies` group."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from currencies_ops.console import EXIT_CLEAN, EXIT_DIFFERENT, fail, progress_bar
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target, TargetError, resolve
from currencies_ops.verify import KINDS, CheckFailed, Report
from currencies_ops.verify import verify as run_verify


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stage", metavar="NAME", help="Check this stage of .chalice/config.json (AWS credentials: yours).")
@click.option("--local", is_flag=True, help="Check the `currencies up` running on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (counts and differences), no progress.")
@click.option(
    "--max-differences",
    default=100,
    show_default=True,
    type=click.IntRange(0),
    help="List at most this many differences (all are counted).",
)
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    metavar="SYMBOL",
    help="Check only this symbol (repeatable) instead of the whole table.",
)
def verify(stage: str | None, local: bool, as_json: bool, max_differences: int, symbols: Sequence[str]) -> None:
    """Check that the search indices agree with the DynamoDB table.

    Reports rates missing from the current-state index, extra documents, different rates,
    older or newer versions, newest events that disagree with the table, items no reader
    can use, and the dead-letter queue's depth by source and reason. Without --stage or
    --local the deployment comes from the CURRENCIES_* environment variables.

    Exit status: 0 clean, 1 differences found, 2 could not check.

    \b
    Examples:
      currencies verify --local
      currencies verify --stage dev --json --max-differences 1000
      currencies verify --local --symbol EUR --symbol USD
    """
    started = time.monotonic()
    console = Console(stderr=True)
    try:
        target = resolve(stage, local)
    except TargetError as error:
        fail(console, as_json, "verify", str(error))
    with OperationMetrics("verify", target.settings.pushgateway_url) as metrics:
        try:
            with progress_bar(console, as_json, target, "verifying") as bar:
                report = run_verify(target, metrics, symbols=symbols, max_differences=max_differences, progress=bar)
        except CheckFailed as error:
            metrics.finish("failed")
            fail(console, as_json, "verify", str(error))
        metrics.finish("clean" if report.clean else "different")
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"target": target.describe(), **report.to_json(), "seconds": round(seconds, 3)}))
    else:
        _print(Console(), target, report, seconds)
    raise SystemExit(EXIT_CLEAN if report.clean else EXIT_DIFFERENT)


def _print(console: Console, target: Target, report: Report, seconds: float) -> None:
    if report.differences:
        table = Table(title="differences")
        for column in ("kind", "symbol", "table says", "index says"):
            table.add_column(column)
        for difference in report.differences:
            table.add_row(
                difference.kind, escape(difference.symbol), escape(difference.table), escape(difference.index)
            )
        console.print(table)
        if report.total > len(report.differences):
            console.print(f"… and {report.total - len(report.differences)} more (raise --max-differences to list them)")
    counts = ", ".join(f"{kind} {report.counts[kind]}" for kind in KINDS if report.counts[kind])
    verdict = "[green]clean[/green]" if report.clean else f"[red]{report.total} differences[/red] ({counts})"
    console.print(
        f"{verdict}: {report.table_items} table items and {report.index_documents} index documents checked "
        f"in {seconds:.1f} s ({escape(target.describe())})"
    )
    letters = report.dead_letters
    if letters is None:
        console.print("dead-letter queue: not configured (CURRENCIES_DLQ_URL)")
        return
    console.print(
        f"dead-letter queue: {letters.depth} letters"
        + (f" (grouped below: a sample of {letters.peeked})" if letters.sample and letters.peeked else "")
    )
    if letters.groups:
        table = Table()
        for column, justify in (("source", "left"), ("reason", "left"), ("letters", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for (source, reason), count in sorted(letters.groups.items(), key=lambda group: -group[1]):
            table.add_row(escape(source), escape(reason), str(count))
        console.print(table)
