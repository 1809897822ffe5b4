"""What Lambda's event source mappings do in AWS, done locally by two polling threads.

- `StreamPoller` reads the table's stream in order and invokes the stream handler,
  treating failures as this project's stream mapping does on AWS
  (`stream_mapping`: partial batch responses, bisection, bounded retries and
  record age, an on-failure destination).
- `QueuePoller` receives from the queue, invokes the consumer, and deletes only
  the messages that succeeded (with ReportBatchItemFailures, the default here, the
  ones not named in the handler's partial batch response); failed ones come back
  after the visibility timeout and reach the DLQ after the redrive limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chalice.local import LambdaContext

from chalicelib.consumer.sqs_batch import delete_messages
from chalicelib.observability.queues import sample_depths
from currencies_local.lambda_events import dynamodb_event, failed_message_ids, sqs_event
from currencies_local.stream_mapping import Discarded, ShardCheckpoint, failure_description, first_failed
from currencies_ops.deploy.stack import StreamMappingSettings

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
LAMBDA_TIMEOUT_MS = 60_000


def _context(name: str) -> LambdaContext:
    return LambdaContext(function_name=name, memory_size=512, max_runtime_ms=LAMBDA_TIMEOUT_MS)


class _Poller(threading.Thread):
    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stop_requested = threading.Event()

    def stop(self) -> None:
        self._stop_requested.set()

    def _service_error(self, error: Exception) -> None:
        log.warning("%s: %s: %s; retrying in 1 s", self.name, type(error).__name__, error)
        self._stop_requested.wait(1.0)

    def _invoke(self, handler: Handler, event: dict[str, Any]) -> tuple[bool, Any]:
        try:
            return True, handler(event, _context(self.name))
        except Exception:
            log.exception("%s: handler failed; the batch will be retried", self.name)
            return False, None


class StreamPoller(_Poller):
    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Handler,
        *,
        region: str,
        on_failure: Callable[[dict[str, Any]], None],
        config: StreamMappingSettings | None = None,
        idle_sleep_s: float = 0.2,
    ) -> None:
        super().__init__("stream-poller")
        self._streams = streams
        self._stream_arn = stream_arn
        self._handler = handler
        self._region = region
        self._on_failure = on_failure
        self._config = config or StreamMappingSettings()
        self._idle_sleep_s = idle_sleep_s
        self._shard_id = ""
        self.records = 0
        """Records settled: handled, or given up on and described to the on-failure destination."""

    def _first_iterator(self) -> str | None:
        """An iterator at the start of the stream's shard (None if stopped before one was had)."""
        while not self._stop_requested.is_set():
            try:
                shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
                # One shard in moto; several shards would each need their own ordered reader.
                self._shard_id = shards[0]["ShardId"]
                return self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn, ShardId=self._shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            except Exception as error:
                self._service_error(error)
        return None

    def run(self) -> None:
        iterator = self._first_iterator()
        checkpoint = ShardCheckpoint(self._config)
        backoff = 0.5
        while iterator is not None and not self._stop_requested.is_set():
            if not checkpoint.pending:
                try:
                    # Reusing NextShardIterator matters: moto keeps every iterator it hands out.
                    response = self._streams.get_records(ShardIterator=iterator, Limit=self._config.batch_size)
                except Exception as error:
                    self._service_error(error)
                    continue
                iterator = response.get("NextShardIterator")  # None once a shard is closed
                checkpoint.add(response["Records"])
                if not checkpoint.pending:
                    self._stop_requested.wait(self._idle_sleep_s)
                    continue
            records, expired = checkpoint.next_batch(datetime.now(UTC))
            self._give_up(expired)
            if not records:
                continue
            ok, response = self._invoke(self._handler, dynamodb_event(records, self._stream_arn, self._region))
            failed_from = first_failed(response, records) if ok and self._config.report_batch_item_failures else None
            settled = len(records) if failed_from is None else failed_from
            if ok:
                self.records += settled
            given_up = checkpoint.settle(errored=not ok, failed_from=failed_from)
            self._give_up(given_up)
            if ok and failed_from is None:
                backoff = 0.5
            else:
                self._stop_requested.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _give_up(self, discarded: list[Discarded]) -> None:
        for batch in discarded:
            description = failure_description(
                batch, stream_arn=self._stream_arn, shard_id=self._shard_id, function="relay_changes"
            )
            log.error("stream records given up on; described to the on-failure destination: %s", description)
            try:
                self._on_failure(description)
            except Exception:  # the description is in the log above; the records stay in the stream
                log.exception("%s: the on-failure destination refused the description", self.name)
            self.records += len(batch.records)


class QueuePoller(_Poller):
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        *,
        region: str,
        batch_size: int = 10,
        wait_s: int = 1,
        report_batch_item_failures: bool = True,
    ) -> None:
        super().__init__("queue-poller")
        self._partial = report_batch_item_failures
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._handler = handler
        self._region = region
        self._batch_size = batch_size
        self._wait_s = wait_s

    def run(self) -> None:
        while not self._stop_requested.is_set():
            try:
                messages = self._receive_batch()
            except Exception as error:
                self._service_error(error)
                continue
            if not messages:
                continue
            ids = [message["MessageId"] for message in messages]
            ok, response = self._invoke(self._handler, sqs_event(messages, self._queue_arn, self._region))
            failed = self._failed(ok, response, ids)
            done = [message for message in messages if message["MessageId"] not in failed]
            try:
                self._delete_messages(done)
            except Exception as error:  # they come back after the visibility timeout: a duplicate, not a loss
                self._service_error(error)

    def _failed(self, ok: bool, response: Any, ids: list[str]) -> set[str]:
        """The messages to leave in the queue, as Lambda decides after an invocation."""
        if not ok:
            return set(ids)
        # Without ReportBatchItemFailures, Lambda ignores what the handler returns.
        return failed_message_ids(response, ids) if self._partial else set()

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to `batch_size` messages: keep receiving while the queue has more, as Lambda batches."""
        batch: list[dict[str, Any]] = []
        while len(batch) < self._batch_size and not self._stop_requested.is_set():
            received = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=min(10, self._batch_size - len(batch)),
                WaitTimeSeconds=0 if batch else self._wait_s,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                break
            batch.extend(received)
        return batch

    def _delete_messages(self, messages: list[dict[str, Any]]) -> None:
        delete_messages(self._sqs, self._queue_url, [message["ReceiptHandle"] for message in messages])


class QueueDepthSampler(_Poller):
    """What the metrics janitor does on its schedule in AWS: sample the queues' depths into the gauges."""

    def __init__(self, sqs: Any, queue_urls: dict[str, str], every_s: float = 2.0) -> None:
        super().__init__("queue-depths")
        self._sqs = sqs
        self._queue_urls = queue_urls
        self._every_s = every_s

    def run(self) -> None:
        while not self._stop_requested.is_set():
            sample_depths(self._sqs, self._queue_urls)
            self._stop_requested.wait(self._every_s)
