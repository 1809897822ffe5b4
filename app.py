"""currencies: routes and event handlers only; the behaviour lives in `chalicelib`.

Pipeline: API -> DynamoDB table -> stream -> `relay_changes` -> SNS topic ->
SQS queue -> `index_changes` -> search engine (events + current rates).
"""

from __future__ import annotations

from typing import Any

from chalice import Chalice, Rate, Response
from chalice.app import CloudWatchEvent, DynamoDBEvent, SNSEvent, SQSEvent

from chalicelib import clients
from chalicelib.api import handlers, openapi
from chalicelib.api.access import RouteAccess
from chalicelib.consumer.indexer import BatchReport, InboundMessage, consume, deadline_of
from chalicelib.consumer.sqs_batch import inbound_messages, settle
from chalicelib.observability import janitor, logs, metrics, push
from chalicelib.observability.queues import sample_depths
from chalicelib.stream.relay import relay

app = Chalice(app_name="currencies")
logs.configure(app.log)  # JSON lines at CURRENCIES_LOG_LEVEL; Chalice's own error lines as JSON too
settings = clients.settings()
access = RouteAccess.from_env()  # who may write and read: API Gateway enforces it (chalicelib/api/access.py)


@app.middleware("all")
def correlate_logs(event: Any, get_response: Any) -> Any:
    """Every line logged during an invocation carries its request id and function name (outermost middleware)."""
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    with logs.invocation(context):
        return get_response(event)


@app.middleware("all")
def push_metrics(event: Any, get_response: Any) -> Any:
    """Every invocation of every function ends by pushing its container's metrics (when configured)."""
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    return push.around_invocation(clients.metrics_pusher(), context, lambda: get_response(event))


@app.middleware("http")
def http_middleware(request: Any, get_response: Any) -> Response:
    return handlers.normalise_errors(request, get_response)


@app.route("/currency", methods=["POST"], content_types=handlers.ACCEPTED_CONTENT_TYPES, **access.write)
def create_currency() -> Response:
    return handlers.create_or_update(app.current_request, clients.store())


@app.route("/currency", methods=["GET"], **access.read)
def list_currencies() -> Response:
    return handlers.read_all(clients.store())


@app.route("/currency/{symbol}", methods=["PUT"], content_types=handlers.ACCEPTED_CONTENT_TYPES, **access.write)
def update_currency(symbol: str) -> Response:
    return handlers.update(app.current_request, clients.store(), symbol)


@app.route("/currency/{symbol}", methods=["GET"], **access.read)
def get_currency(symbol: str) -> Response:
    return handlers.read(app.current_request, clients.store(), clients.history, symbol)


@app.route("/currency/{symbol}/history", methods=["GET"], **access.read)
def get_currency_history(symbol: str) -> Response:
    return handlers.history(app.current_request, clients.history, symbol)


@app.route("/currency/{symbol}", methods=["DELETE"], **access.write)
def delete_currency(symbol: str) -> Response:
    return handlers.delete(clients.store(), symbol)


@app.route("/openapi.json", methods=["GET"])  # public in every stage: the contract
def get_openapi_document() -> dict[str, object]:
    return openapi.document()


metrics.start_routes_at_zero(app.routes)


@app.on_dynamodb_record(stream_arn=settings.require("stream_arn"), batch_size=100, starting_position="TRIM_HORIZON")
def relay_changes(event: DynamoDBEvent) -> dict[str, Any]:
    report = relay(
        [record.to_dict() for record in event],
        sns=clients.sns(),
        topic_arn=settings.require("topic_arn"),
        dead_letter=clients.dead_letter_queue("stream"),
        deadline=deadline_of(event.context),
    )
    return report.batch_response(partial=settings.partial_batch_response)


def _consume(messages: list[InboundMessage], context: Any) -> BatchReport:
    return consume(
        messages,
        clients.sink(),
        events_index=settings.events_index,
        rates_index=settings.rates_index,
        dead_letter=clients.dead_letter_queue("consumer"),
        max_receives=settings.max_receives,
        deadline=deadline_of(context),
    )


if settings.consumer_trigger == "sqs":

    @app.on_sqs_message(
        queue=settings.queue_name,
        batch_size=settings.batch_size,
        maximum_batching_window_in_seconds=settings.batch_window_s,
    )
    def index_changes(event: SQSEvent) -> dict[str, Any]:
        records = [record.to_dict() for record in event]
        report = _consume(inbound_messages(records), event.context)
        return settle(records, report, partial_response=settings.partial_batch_response, sqs=clients.sqs)

else:
    # The original example's wiring: the consumer subscribed straight to the topic,
    # one message per invocation. Raising makes Lambda retry the async invocation.

    @app.on_sns_message(topic=settings.topic_name)
    def index_changes(event: SNSEvent) -> None:
        record = InboundMessage(event.to_dict()["Records"][0]["Sns"]["MessageId"], event.message)
        if _consume([record], event.context).failed_ids:
            raise RuntimeError("indexing failed; Lambda will retry this message")


if settings.pushgateway_url:
    # Lambda containers come and go; their Pushgateway groups must not pile up.

    @app.schedule(Rate(5, unit=Rate.MINUTES))
    def tidy_metrics(event: CloudWatchEvent) -> dict[str, int]:
        retired = janitor.tidy(
            clients.pushgateway(),  # type: ignore[arg-type]
            function=clients.function_name(),
            idle_after_s=settings.metrics_idle_after_s,
            sample_queues=lambda: sample_depths(clients.sqs(), clients.queue_urls()),
            timeout_s=min(2.0, (push.remaining_s(event.context) or 8.0) / 4),
        )
        return {"groups_retired": retired}
