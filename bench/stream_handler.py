"""The stream handler's cost per record: SNS API calls and records/s, ours against one Publish per record.

Starts moto server (the project's wrapper, `currencies_local.moto_server`) on a free
port, makes an SNS topic, and feeds N Lambda-shaped DynamoDB stream records (made by
`currencies_local.synthetic` and shaped by `currencies_local.lambda_events`, as the local
runtime hands them to the handler) through:
- ours: the production `relay()` in batches of 100 (the stream mapping's batch size);
- naive: the same conversion, then one `sns.publish` per record (the original example's way).
Every SNS API call is counted by a botocore `before-call.sns.*` hook on the client. The
topic has no subscribers: moto delivering to an SQS queue gets slower as the queue grows,
which would measure moto rather than the handler. Repetitions alternate the two variants.

    python -m bench.stream_handler --json bench/results/stream_handler.json [--write-docs]
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import click
from rich.console import Console

from bench.report import command_line, full_mode, machine, machine_line, publish, spread
from chalicelib.stream.changes import change_from_record
from chalicelib.stream.relay import relay
from currencies_local.lambda_events import dynamodb_event
from currencies_local.moto import REGION, aws_environment, start_moto
from currencies_local.processes import free_port
from currencies_local.synthetic import random_table

console = Console()
BATCH_SIZE = 100
"""The stream mapping's batch size (app.py's `on_dynamodb_record`)."""
STREAM_ARN = f"arn:aws:dynamodb:{REGION}:123456789012:table/currency/stream/2026-01-01T00:00:00.000"
TARGET_CALLS_PER_RECORD = 0.1


def stream_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` Lambda-shaped stream records of random writes and deletes over 200 symbols."""
    symbols = [f"{a}{b}{c}" for a in "ABCDEFGH" for b in "ABCDE" for c in "ABCDE"]
    return dynamodb_event(random_table(count, symbols, seed=seed).records, STREAM_ARN, REGION)["Records"]


def count_calls(client: Any) -> Counter[str]:
    """A live count of the client's API calls by operation name (every call, retries included)."""
    calls: Counter[str] = Counter()

    def before_call(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.sns.*", before_call)
    return calls


def ours(records: Sequence[dict[str, Any]], sns: Any, topic_arn: str) -> int:
    """The production relay, one invocation per mapping batch; returns the records published."""
    published = 0
    for start in range(0, len(records), BATCH_SIZE):
        report = relay(records[start : start + BATCH_SIZE], sns=sns, topic_arn=topic_arn)
        published += report.counts["published"]
    return published


def naive(records: Sequence[dict[str, Any]], sns: Any, topic_arn: str) -> int:
    """The same conversion and message attributes, then one Publish per record."""
    published = 0
    for record in records:
        change = change_from_record(record, datetime.now(UTC))
        sns.publish(
            TopicArn=topic_arn,
            Message=change.to_json(),
            MessageAttributes={
                "type": {"DataType": "String", "StringValue": change.type},
                "symbol": {"DataType": "String", "StringValue": change.symbol},
            },
        )
        published += 1
    return published


VARIANTS: dict[str, Callable[[Sequence[dict[str, Any]], Any, str], int]] = {"ours": ours, "naive": naive}


def measure(
    variant: str, records: Sequence[dict[str, Any]], sns: Any, topic_arn: str, calls: Counter[str]
) -> dict[str, float]:
    """One run of a variant: wall and CPU time, and the SNS calls it made."""
    calls.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    published = VARIANTS[variant](records, sns, topic_arn)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if published != len(records):
        raise click.ClickException(f"{variant}: {published} of {len(records)} records published")
    return {
        "seconds": wall,
        "records_per_s": len(records) / wall,
        "sns_calls": sum(calls.values()),
        "cpu_us_per_record": cpu / len(records) * 1e6,
    }


def run(records: int, repetitions: int, moto_url: str) -> dict[str, Any]:
    """Both variants, interleaved, against the moto server at `moto_url`."""
    session = boto3.session.Session(region_name=REGION, **_credentials())
    sns = session.client("sns", endpoint_url=moto_url)
    topic_arn = sns.create_topic(Name=f"bench-stream-{int(time.time())}")["TopicArn"]
    calls = count_calls(sns)
    batch = stream_records(records)
    measure("ours", batch[:BATCH_SIZE], sns, topic_arn, calls)  # warm-up: connections, botocore's caches
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for repetition in range(repetitions):
        order = list(VARIANTS) if repetition % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            runs[name].append(measure(name, batch, sns, topic_arn, calls))
    return {"records": records, "batch_size": BATCH_SIZE, "repetitions": repetitions, "variants": summarise(runs)}


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per variant: SNS calls per record (the same every run) and the spread of records/s and CPU µs/record."""
    summary = {}
    for name, measured in runs.items():
        summary[name] = {
            "sns_calls": [run["sns_calls"] for run in measured],
            "records_per_s": _rounded(spread([run["records_per_s"] for run in measured])),
            "cpu_us_per_record": _rounded(spread([run["cpu_us_per_record"] for run in measured])),
            "runs": measured,
        }
    return summary


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 1) for key, value in values.items()}


def _credentials() -> dict[str, str]:
    environment = aws_environment("http://unused")
    return {
        "aws_access_key_id": environment["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": environment["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": environment["AWS_SESSION_TOKEN"],
    }


def calls_per_record(result: dict[str, Any], variant: str) -> float:
    """The variant's SNS calls per record (the median run's)."""
    calls = sorted(result["variants"][variant]["sns_calls"])
    return calls[len(calls) // 2] / result["records"]


def markdown(result: dict[str, Any], command: str) -> str:
    """The doc section: one row per variant, then the machine and the command."""
    lines = [
        f"{result['records']:,} stream records (random writes and deletes over 200 symbols) through the "
        f"handler against moto server, in batches of {result['batch_size']} (the mapping's batch size); "
        f"{result['mode']} run, {result['repetitions']} interleaved repetition(s), median [min-max].",
        "",
        "| variant | SNS calls per record | records/s | handler CPU µs/record |",
        "|---|---:|---:|---:|",
    ]
    titles = {"ours": "ours: `relay()`, PublishBatch of up to 10", "naive": "one Publish per record"}
    for name, title in titles.items():
        variant = result["variants"][name]
        rate, cpu = variant["records_per_s"], variant["cpu_us_per_record"]
        lines.append(
            f"| {title} | {calls_per_record(result, name):.3f} | {rate['median']:,.0f} "
            f"[{rate['min']:,.0f}-{rate['max']:,.0f}] | {cpu['median']:,.0f} |"
        )
    ours_rate = result["variants"]["ours"]["records_per_s"]["median"]
    naive_rate = result["variants"]["naive"]["records_per_s"]["median"]
    verdict = "met" if calls_per_record(result, "ours") <= TARGET_CALLS_PER_RECORD else "missed"
    lines += [
        "",
        f"Target ≤ {TARGET_CALLS_PER_RECORD} SNS calls per record: {verdict}. Ours/naive records/s: "
        f"{ours_rate / naive_rate:.1f} x. moto answers over loopback on the same machine; against AWS "
        "every call is a network round trip, so each call saved is worth more there than here.",
        "",
        machine_line(result["machine"]),
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--records", type=int, help="Stream records per run [default: 2,000 full, 300 quick].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write results here.")
@click.option("--write-docs", is_flag=True, help="Write the tables into docs/benchmarks.md (bench:stream_handler).")
def main(records: int | None, json_path: Path | None, write_docs: bool) -> None:
    """SNS calls per stream record and records/s: the production relay against one Publish per record."""
    full = full_mode()
    records = records or (2_000 if full else 300)
    repetitions = 5 if full else 1
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as log_dir:
        with console.status(f"starting moto server on port {port}"):
            moto = start_moto("127.0.0.1", port, Path(log_dir))
        try:
            result = run(records, repetitions, f"http://127.0.0.1:{port}")
        finally:
            moto.stop()
    result = {"mode": "full" if full else "quick", "machine": machine(), **result}
    text = markdown(result, command_line("stream_handler"))
    publish("stream_handler", result, text, json_path=json_path, write_docs=write_docs)


if __name__ == "__main__":
    main()
