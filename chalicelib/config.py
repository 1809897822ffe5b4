"""Settings read from the environment, the only way a Lambda (or the local runtime) is configured.

Chalice sets a stage's `environment_variables` before it imports `app.py`, so the
event-source decorators can read their ARNs and names from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ConsumerTrigger = Literal["sqs", "sns"]


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    table_name: str
    stream_arn: str
    topic_arn: str
    topic_name: str
    queue_name: str
    consumer_trigger: ConsumerTrigger
    batch_size: int
    search_url: str
    events_index: str
    rates_index: str
    dlq_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        trigger = env.get("CURRENCIES_CONSUMER_TRIGGER", "sqs")
        if trigger not in ("sqs", "sns"):
            raise ConfigError(f"CURRENCIES_CONSUMER_TRIGGER must be 'sqs' or 'sns', got {trigger!r}")
        batch_size = env.get("CURRENCIES_BATCH_SIZE", "10")
        if not batch_size.isdigit() or not 1 <= int(batch_size) <= 10_000:
            raise ConfigError(f"CURRENCIES_BATCH_SIZE must be an integer 1..10000, got {batch_size!r}")
        topic_arn = env.get("CURRENCIES_TOPIC_ARN", "")
        return cls(
            table_name=env.get("CURRENCIES_TABLE", "currency"),
            stream_arn=env.get("CURRENCIES_STREAM_ARN", ""),
            topic_arn=topic_arn,
            topic_name=env.get("CURRENCIES_TOPIC", topic_arn.rpartition(":")[2] or "currency-topic"),
            queue_name=env.get("CURRENCIES_QUEUE", "currency-queue"),
            consumer_trigger=trigger,  # type: ignore[arg-type]
            batch_size=int(batch_size),
            search_url=env.get("CURRENCIES_SEARCH_URL", "http://127.0.0.1:9200"),
            events_index=env.get("CURRENCIES_EVENTS_INDEX", "currency-events"),
            rates_index=env.get("CURRENCIES_RATES_INDEX", "currency-rates"),
            dlq_url=env.get("CURRENCIES_DLQ_URL") or None,
        )

    def require(self, name: str) -> str:
        """The value of a setting a handler cannot work without, or a clear error."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"CURRENCIES_{name.upper()} is not set; set it in .chalice/config.json")
        return value
