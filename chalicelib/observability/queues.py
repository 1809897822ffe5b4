"""Queue depths as gauges: the consumer's backlog and the dead-letter queue.

SQS's depth is only visible by asking SQS, so someone must sample it: the metrics
janitor in Lambda (pushed as one group), the local runtime on a timer (scraped).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from chalicelib.observability import metrics

log = logging.getLogger(__name__)


def sample_depths(sqs: Any, queue_urls: Mapping[str, str]) -> dict[str, int]:
    """Visible messages per queue (queue role -> URL); a queue that cannot be read is logged and left out."""
    depths = {}
    for queue, url in queue_urls.items():
        try:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        except Exception as error:
            log.warning("could not read a queue's depth", extra={"queue": queue, "error": repr(error)})
            with contextlib.suppress(KeyError):  # no stale depth: the series goes away until it can be read
                metrics.QUEUE_MESSAGES.remove(queue)
            continue
        depths[queue] = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        metrics.QUEUE_MESSAGES.labels(queue).set(depths[queue])
    return depths
