"""The RAG ingest Lambda: S3 (knowledge bucket) → SQS → here, one S3 event per message.

Each record is handled on its own by Powertools' BatchProcessor: a record that fails (a
malformed event, a document with bad front matter, an index that refuses) is reported in
`batchItemFailures`, so SQS retries only that message and, after the queue's maxReceiveCount,
moves it to the dead-letter queue, while the rest of the batch is done. Logs carry object keys,
document ids and counts; knowledge documents hold no patient data.
"""

from __future__ import annotations

import functools
import os
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.errors import ClinriskError
from clinrisk.explain.ingest import ObjectChange, apply_change
from clinrisk.explain.ports import KnowledgeIndex
from clinrisk.runtime import build_knowledge_index
from clinrisk.settings import Settings

SERVICE = "clinrisk-rag-ingest"
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "clinrisk"))
# A batch whose every record failed is reported like any other, not raised: the failures reach
# the DLQ (and its alarm) through the redrive policy, and Lambda's error metric stays for bugs.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
TEST_EVENT = "s3:TestEvent"  # sent once when the bucket notification is configured


class ForeignBucketError(ClinriskError):
    """An event names a bucket other than the knowledge bucket; nothing is read from it."""


@functools.cache
def _ports() -> tuple[Settings, KnowledgeIndex]:
    settings = Settings()
    return settings, build_knowledge_index(settings)


def changes(body: dict[str, Any]) -> list[ObjectChange]:
    """The object changes an S3 event notification describes (none for S3's test event)."""
    if body.get("Event") == TEST_EVENT:
        return []
    event = parse(event=body, model=S3Model)
    found = []
    for record in event.Records:
        if record.s3.object is None:
            raise ClinriskError("an S3 event record without an object")
        found.append(
            ObjectChange(
                bucket=record.s3.bucket.name,
                key=unquote_plus(record.s3.object.key),  # S3 URL-encodes keys in notifications
                change="removed" if record.eventName.startswith("ObjectRemoved") else "created",
            )
        )
    return found


def read_object(bucket: str, key: str) -> bytes:
    from clinrisk.adapters.aws import S3ObjectStore

    settings, _ = _ports()
    if settings.explain.knowledge_bucket and bucket != settings.explain.knowledge_bucket:
        raise ForeignBucketError(f"event for bucket {bucket}, not the knowledge bucket")
    return S3ObjectStore(bucket).read_bytes(key)


def record_handler(record: SQSRecord) -> None:
    _, index = _ports()
    for change in changes(record.json_body):
        result = apply_change(change, read=read_object, index=index)
        logger.info(
            "ingested",
            extra={
                "key": change.key,
                "change": change.change,
                "doc_id": result.doc_id,
                "written": result.written,
                "deleted": result.deleted,
                "unchanged": result.unchanged,
            },
        )
        metrics.add_metric(name="ChunksWritten", unit=MetricUnit.Count, value=result.written)
        metrics.add_metric(name="ChunksDeleted", unit=MetricUnit.Count, value=result.deleted)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
