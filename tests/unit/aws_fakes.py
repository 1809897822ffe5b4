"""SNS and SQS fakes that enforce AWS's limits (moto does not), with scripted failures.

Sizes count as AWS counts them, with the same model the local runtime enforces
(`currencies_local.aws_limits`): the body plus every attribute's name, data type and value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from currencies_local.aws_limits import SNS_MAX_BYTES
from currencies_local.aws_limits import message_bytes as message_size

LIMIT_BYTES = SNS_MAX_BYTES
SQS_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
EntryFailure = tuple[str, str, bool]
"""(Code, Message, SenderFault) of a failed publish_batch entry."""


def client_error(
    code: str, message: str = "refused", status: int = 400, operation: str = "PublishBatch"
) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class FakeSns:
    """publish_batch with AWS's limits; `fail(change_id, attempt)` scripts entry failures, `call_errors` whole calls."""

    def __init__(
        self,
        fail: Callable[[str, int], EntryFailure | None] | None = None,
        call_errors: list[Exception | None] | None = None,
    ) -> None:
        self._fail = fail or (lambda change_id, attempt: None)
        self._call_errors = list(call_errors or [])
        self.calls: list[list[dict[str, Any]]] = []
        self.attempts: Counter[str] = Counter()
        """Entries sent, by change id."""
        self.published: list[str] = []
        """Change ids SNS accepted, in order (a republished change appears again)."""

    @property
    def sent(self) -> int:
        return sum(len(call) for call in self.calls)

    def publish_batch(self, *, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict[str, Any]:
        entries = PublishBatchRequestEntries
        self.calls.append(entries)
        if self._call_errors and (error := self._call_errors.pop(0)) is not None:
            raise error
        if not 1 <= len(entries) <= 10:
            raise client_error("TooManyEntriesInBatchRequest", f"{len(entries)} entries")
        if len({e["Id"] for e in entries}) != len(entries):
            raise client_error("BatchEntryIdsNotDistinct")
        total = sum(message_size(e["Message"], e.get("MessageAttributes")) for e in entries)
        if total > LIMIT_BYTES:
            raise client_error("BatchRequestTooLong", f"{total} bytes")
        successful, failed = [], []
        for entry in entries:
            change_id = json.loads(entry["Message"])["id"]
            self.attempts[change_id] += 1
            failure = self._fail(change_id, self.attempts[change_id])
            if failure is None:
                self.published.append(change_id)
                successful.append({"Id": entry["Id"], "MessageId": f"m-{len(self.published)}"})
            else:
                code, message, sender_fault = failure
                failed.append({"Id": entry["Id"], "Code": code, "Message": message, "SenderFault": sender_fault})
        return {"Successful": successful, "Failed": failed}


class FakeSqs:
    """send_message with SQS's 256 KiB limit (or a smaller queue's); `refuse` scripts refusals per call."""

    def __init__(self, max_bytes: int = LIMIT_BYTES, refuse: list[bool] | None = None) -> None:
        self.max_bytes = max_bytes
        self._refuse = list(refuse or [])
        self.messages: list[dict[str, Any]] = []
        self.attempts = 0

    def send_message(self, *, QueueUrl: str, MessageBody: str, MessageAttributes: dict[str, Any]) -> dict[str, str]:
        self.attempts += 1
        if self._refuse and self._refuse.pop(0):
            raise client_error("KMS.AccessDeniedException", "no key", operation="SendMessage")
        size = message_size(MessageBody, MessageAttributes)
        if size > self.max_bytes:
            raise client_error("InvalidParameterValue", f"message of {size} bytes is too long", operation="SendMessage")
        for text in [MessageBody, *(value["StringValue"] for value in MessageAttributes.values())]:
            if not text or not SQS_TEXT.fullmatch(text):
                raise client_error("InvalidMessageContents", "invalid characters", operation="SendMessage")
        self.messages.append({"Body": MessageBody, "MessageAttributes": MessageAttributes})
        return {"MessageId": str(len(self.messages))}

    def letters(self) -> list[dict[str, Any]]:
        return [json.loads(message["Body"]) for message in self.messages]
