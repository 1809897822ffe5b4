"""The `currencies redrive` command (to be merged into currencies_ops/cli.py beside `verify`)."""

from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from currencies_ops.console import EXIT_CLEAN, EXIT_DIFFERENT, fail, progress_bar
from currencies_ops.letters import QueueUnreadable
from currencies_ops.metrics import OperationMetrics
from currencies_ops.redrive import DEFAULT_LIMIT, Options, Report, rows
from currencies_ops.redrive import redrive as run_redrive
from currencies_ops.target import TargetError, resolve

LISTED_PROBLEMS = 20


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stage", metavar="NAME", help="Work on this stage of .chalice/config.json (AWS credentials: yours).")
@click.option("--local", is_flag=True, help="Work on the `currencies up` running on this machine.")
@click.option(
    "--source",
    type=click.Choice(["stream", "consumer"]),
    help="Choose the letters of this stage: stream (back to the topic) or consumer (back to the queue).",
)
@click.option("--reason", metavar="TEXT", help="Choose the letters whose reason contains TEXT (any case).")
@click.option("--all", "everything", is_flag=True, help="Choose every letter.")
@click.option("--dry-run", is_flag=True, help="Show where the chosen letters would go (all, without a choice).")
@click.option(
    "--limit",
    default=DEFAULT_LIMIT,
    show_default=True,
    type=click.IntRange(1),
    help="Read at most this many letters from the queue.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, no progress.")
def redrive(
    *,
    stage: str | None,
    local: bool,
    source: str | None,
    reason: str | None,
    everything: bool,
    dry_run: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Show the dead-letter queue, or send chosen letters back where they belong.

    Without a choice (--source, --reason or --all) the letters are only shown, grouped by
    source and reason. Chosen stream letters are converted again and published to the topic;
    chosen consumer letters (and messages the queue's redrive policy moved) go to the consumer's
    queue. A letter is deleted only once it was re-sent; one that cannot be (no payload, still
    invalid) stays and is listed. Every other letter read is made visible again at the end.

    Exit status: 0 every chosen letter was (--dry-run: can be) re-sent, 1 some were not,
    2 the dead-letter queue could not be read.

    \b
    Examples:
      currencies redrive --local
      currencies redrive --local --source consumer --dry-run
      currencies redrive --stage dev --reason "bulk request failed"
      currencies redrive --stage dev --all --json
    """
    started = time.monotonic()
    console = Console(stderr=True)
    options = Options(source=source, reason=reason, everything=everything, dry_run=dry_run, limit=limit)
    try:
        target = resolve(stage, local)
    except TargetError as error:
        fail(console, as_json, "read the dead-letter queue", str(error))
    with OperationMetrics("redrive", target.settings.pushgateway_url) as metrics:
        try:
            with progress_bar(console, as_json, target, "reading the dead-letter queue of") as bar:
                report = run_redrive(target, metrics, options, progress=bar)
        except QueueUnreadable as error:
            metrics.finish("failed")
            fail(console, as_json, "read the dead-letter queue", str(error))
        metrics.finish("complete" if report.complete else "incomplete")
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"target": target.describe(), **report.to_json(), "seconds": round(seconds, 3)}))
    else:
        _print(Console(), report, seconds)
    raise SystemExit(EXIT_CLEAN if report.complete else EXIT_DIFFERENT)


def _print(console: Console, report: Report, seconds: float) -> None:
    more = " (--limit reached: the queue may hold more)" if report.limit_reached else ""
    console.print(f"{len(report.entries)} letters read from {escape(report.queue_url)} in {seconds:.1f} s{more}")
    if not report.entries:
        return
    destinations = {"topic": report.topic_arn or "the topic", "queue": report.consumer_queue_url or "the queue"}
    table = Table()
    columns = ["source", "reason"] + ([] if report.mode == "show" else ["goes to"]) + ["letters"]
    columns += ["re-sent"] if report.mode == "redrive" else []
    for column in [*columns, "example"]:
        table.add_column(column, justify="right" if column in ("letters", "re-sent") else "left")
    for row in rows(report.entries, report.mode):
        cells = [row.source, row.reason]
        cells += [] if report.mode == "show" else [destinations.get(row.where, row.where)]
        cells += [str(row.letters)] + ([str(row.resent)] if report.mode == "redrive" else [])
        table.add_row(*(escape(cell) for cell in [*cells, row.example]))
    console.print(table)
    if report.mode == "show":
        console.print("choose letters with --source, --reason or --all to send them back (--dry-run first)")
        return
    for entry in report.not_resent[:LISTED_PROBLEMS]:
        console.print(f"[red]stays[/red] {escape(entry.letter.example)}: {escape(entry.failure or '')}")
    if len(report.not_resent) > LISTED_PROBLEMS:
        console.print(f"… and {len(report.not_resent) - LISTED_PROBLEMS} more (--json lists them all)")
    for entry in (entry for entry in report.entries if entry.delete_error):
        console.print(
            f"[yellow]re-sent but not deleted[/yellow] {escape(entry.letter.example)}: "
            f"{escape(entry.delete_error or '')} (it will be seen again; re-sending it twice is harmless)"
        )
    verb = "can be re-sent" if report.mode == "dry_run" else "re-sent"
    count = len(report.chosen) - len(report.not_resent) if report.mode == "dry_run" else report.resent
    colour = "green" if report.complete else "red"
    console.print(f"[{colour}]{count} of {len(report.chosen)} chosen letters {verb}[/{colour}]")
