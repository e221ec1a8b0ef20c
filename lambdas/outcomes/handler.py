"""Outcome files: a CSV under `outcomes/` in the data bucket → S3's "Object Created" event through
EventBridge → SQS → this function (cdk_app/constructs/outcome_intake.py), which keys and stores each
file (`clinrisk.monitoring.cloud.ingest_outcomes_object`). A message that fails is reported back as a
partial batch failure, retried, and after that kept in the dead-letter queue. Logged: counts and row
numbers, never values."""

from __future__ import annotations

import functools
import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from clinrisk.capture.firehose_sink import secret_key
from clinrisk.capture.keys import IdKeyer
from clinrisk.monitoring.cloud import ingest_outcomes_object
from clinrisk.monitoring.window import utc_now
from clinrisk.settings import Settings

logger = Logger(service="clinrisk-outcomes")
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def _clients() -> tuple[Settings, Any, IdKeyer]:
    import boto3  # type: ignore[import-untyped, unused-ignore]

    settings = Settings()
    if not settings.monitoring.id_key_secret_arn:
        raise ValueError("CLINRISK_MONITORING__ID_KEY_SECRET_ARN is not set")
    key = secret_key(boto3.client("secretsmanager"), settings.monitoring.id_key_secret_arn)
    return settings, boto3.client("s3"), IdKeyer(key)


class OutcomeFileEvent(BaseModel):
    """What is read of the EventBridge event in a message's body (S3 "Object Created")."""

    bucket: str
    key: str

    @classmethod
    def from_body(cls, body: str) -> OutcomeFileEvent:
        event = S3EventBridgeNotificationEvent(json.loads(body))
        if event.detail_type != "Object Created":
            raise ValueError(f"not an Object Created event: {event.detail_type!r}")
        # EventBridge carries the key as written (S3's own notifications URL-encode it).
        return cls(bucket=event.detail.bucket.name, key=event.detail.object.key)


def _record(record: SQSRecord) -> None:
    settings, s3, keyer = _clients()
    file = OutcomeFileEvent.from_body(record.body)
    report = ingest_outcomes_object(settings, s3=s3, bucket=file.bucket, key=file.key, keyer=keyer, now=utc_now())
    logger.info(
        "outcomes stored",
        extra={"key": file.key, "rows_read": report.rows_read, "rows_stored": report.rows_stored,
               "bad_rows": [b.model_dump() for b in report.bad_rows]},
    )  # fmt: skip


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(process_partial_response(event=event, record_handler=_record, processor=processor, context=context))
