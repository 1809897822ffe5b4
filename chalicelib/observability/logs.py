"""Structured JSON logs, one object per line, so CloudWatch Logs Insights can query fields.

Every line carries what correlates it, without each call site passing it:
- `request_id` and `function_name`: the Lambda invocation that logged it (`invocation`),
  so `filter request_id = "..."` gives one invocation's lines across all modules;
- `change_id`: the change it is about (`about_change`, or `extra={"change_id": ...}`).
  It is the DynamoDB stream record's `eventID`, which travels as `Change.id` and is
  indexed as `event.id` in both the events and the rates documents, so one value
  finds a change from the relay's log through the consumer's to the search engine.
The level comes from CURRENCIES_LOG_LEVEL (default INFO). Lines about each change that
went well are DEBUG: at INFO a busy stream logs nothing per change.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from chalicelib.config import ConfigError

LEVEL_VARIABLE = "CURRENCIES_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
# Fields added to every line logged in the current invocation / about the current change.
_context: ContextVar[Mapping[str, str]] = ContextVar("currencies_log_context")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get({}))
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def level_from(env: Mapping[str, str] = os.environ) -> int:
    """The configured level; a clear error on a misspelt one rather than a silent default."""
    text = env.get(LEVEL_VARIABLE, "INFO").strip().upper()
    if text not in LEVELS:
        raise ConfigError(f"{LEVEL_VARIABLE} must be one of {', '.join(LEVELS)}, got {env[LEVEL_VARIABLE]!r}")
    return logging.getLevelName(text)


def configure(*others: logging.Logger, level: int | None = None) -> None:
    """Route the `chalicelib` loggers through the JSON formatter at the configured level (idempotent).

    `others` (e.g. Chalice's `app.log`, which logs unhandled route errors) keep their
    handlers and levels but format as JSON too, so no line in the log group is plain text.
    """
    logger = logging.getLogger("chalicelib")
    logger.setLevel(level_from() if level is None else level)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    for other in others:
        for handler in other.handlers:
            # Only plain stream handlers (Chalice's own): a test runner's capture handler keeps its format.
            if type(handler) is logging.StreamHandler:
                handler.setFormatter(JsonFormatter())


@contextmanager
def fields(**values: str | None) -> Iterator[None]:
    """Add these fields to every line logged within the block (None values are left out)."""
    token = _context.set({**_context.get({}), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def invocation(context: Any) -> AbstractContextManager[None]:
    """Correlate the block's lines with a Lambda invocation (`context` may be None: no fields)."""
    return fields(
        request_id=getattr(context, "aws_request_id", None),
        function_name=getattr(context, "function_name", None),
    )


def about_change(change_id: str | None) -> AbstractContextManager[None]:
    """Mark the block's lines as about one change, including those logged by helpers it calls."""
    return fields(change_id=change_id)
