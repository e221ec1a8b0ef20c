"""The rag_ingest Lambda with real SQS event shapes carrying S3 event notifications: S3 in moto
(the real API model), the local knowledge index, Powertools' BatchProcessor. A poison message
fails alone; with the queue's redrive policy (moto SQS, as the event source mapping drives it) it
ends in the dead-letter queue while the rest of its batch is ingested."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from clinrisk.local.api_server import LocalLambdaContext

BUCKET = "clinrisk-knowledge-test"
REGION = "us-east-1"
HOST_ID = "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:clinrisk-rag-ingest"
DOC = (
    "---\nid: {id}\ntitle: A test document\ntask: readmission\nsource: A named test guideline, 2020\n"
    "url: https://example.org/guideline\ndate: 2020-01-01\nfactors: insulin\n---\n"
    "# Top\n## Insulin\nInsulin changes in hospital.\n## Sodium\n{sodium}\n"
)


def s3_event(key: str, event_name: str = "ObjectCreated:Put", bucket: str = BUCKET) -> dict[str, Any]:
    """An S3 event notification as S3 writes it to SQS (event version 2.1)."""
    s3_object: dict[str, Any] = {"key": quote_plus(key), "sequencer": "0065A1B2C3D4E5F6A7"}
    if event_name.startswith("ObjectCreated"):
        s3_object |= {"size": 321, "eTag": "d41d8cd98f00b204e9800998ecf8427e"}
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-12-06T23:00:00.000Z",
                "eventName": event_name,
                "userIdentity": {"principalId": "AWS:AROAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "10.0.0.1"},
                "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": HOST_ID},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "knowledge-documents",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3"}, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": s3_object,
                },
            }
        ]
    }  # fmt: skip


def sqs_record(body: str) -> dict[str, Any]:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1796598000000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1796598000001",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    }


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import rag_ingest.handler as module

    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLINRISK_EXPLAIN__KNOWLEDGE_BUCKET", BUCKET)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "clinrisk-test")
    module._ports.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield s3
    module._ports.cache_clear()


def invoke(*bodies: str) -> dict[str, Any]:
    from rag_ingest.handler import handler

    event = {"Records": [sqs_record(b) for b in bodies]}
    response = handler(event, LocalLambdaContext(aws_request_id=str(uuid.uuid4()), deadline_epoch=1e12))
    return {"response": response, "ids": [r["messageId"] for r in event["Records"]]}


def indexed(doc_id: str) -> set[str]:
    from rag_ingest.handler import _ports

    return _ports()[1].chunk_ids(doc_id)


def put(s3: Any, key: str, doc_id: str, sodium: str = "Low sodium.") -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=DOC.format(id=doc_id, sodium=sodium).encode())


def test_a_poison_message_fails_alone_and_the_rest_of_the_batch_is_ingested(env: Any) -> None:
    put(env, "readmission/good doc.md", "good doc".replace(" ", "-"))  # a key S3 URL-encodes
    env.put_object(Bucket=BUCKET, Key="readmission/bad-front.md", Body=b"# no front matter\n")
    env.copy_object(Bucket=BUCKET, CopySource=f"{BUCKET}/readmission/good doc.md", Key="readmission/good-doc.md")
    result = invoke(
        json.dumps(s3_event("readmission/good-doc.md")),
        "not json at all",
        json.dumps(s3_event("readmission/bad-front.md")),
    )
    assert result["response"] == {"batchItemFailures": [{"itemIdentifier": i} for i in result["ids"][1:]]}
    assert len(indexed("good-doc")) == 2


def test_the_same_event_again_writes_nothing_and_a_change_replaces_chunks(env: Any, tmp_path: Path) -> None:
    put(env, "readmission/doc-a.md", "doc-a")
    assert invoke(json.dumps(s3_event("readmission/doc-a.md")))["response"] == {"batchItemFailures": []}
    first = indexed("doc-a")
    vectors = tmp_path / "home" / "explain" / "knowledge" / "vectors.usearch"
    written_at = vectors.stat().st_mtime_ns
    invoke(json.dumps(s3_event("readmission/doc-a.md")))
    assert indexed("doc-a") == first and vectors.stat().st_mtime_ns == written_at
    put(env, "readmission/doc-a.md", "doc-a", sodium="Hyponatraemia at discharge.")
    invoke(json.dumps(s3_event("readmission/doc-a.md")))
    assert len(indexed("doc-a") & first) == 1 and len(indexed("doc-a")) == 2


def test_a_removed_object_removes_its_chunks_and_a_late_create_of_a_gone_object_too(env: Any) -> None:
    put(env, "readmission/doc-b.md", "doc-b")
    invoke(json.dumps(s3_event("readmission/doc-b.md")))
    env.delete_object(Bucket=BUCKET, Key="readmission/doc-b.md")
    invoke(json.dumps(s3_event("readmission/doc-b.md", "ObjectRemoved:Delete")))
    assert indexed("doc-b") == set()
    put(env, "readmission/doc-c.md", "doc-c")
    invoke(json.dumps(s3_event("readmission/doc-c.md")))
    env.delete_object(Bucket=BUCKET, Key="readmission/doc-c.md")
    invoke(json.dumps(s3_event("readmission/doc-c.md")))  # the create event arrives after the delete
    assert indexed("doc-c") == set()


def test_the_test_event_is_ignored_and_a_foreign_bucket_is_refused(env: Any) -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-12-06T23:00:00.000Z",
                  "Bucket": BUCKET, "RequestId": "5582815E1AEA5ADF", "HostId": HOST_ID}  # fmt: skip
    result = invoke(json.dumps(test_event), json.dumps(s3_event("readmission/x.md", bucket="someone-elses-bucket")))
    assert result["response"] == {"batchItemFailures": [{"itemIdentifier": result["ids"][1]}]}


def test_with_the_redrive_policy_the_poison_message_lands_in_the_dlq(env: Any) -> None:
    """SQS as the event source mapping drives it with ReportBatchItemFailures: delete what
    succeeded, let failures become visible again; after maxReceiveCount the poison moves on."""
    from rag_ingest.handler import handler

    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.create_queue(QueueName="ingest-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    queue = sqs.create_queue(QueueName="ingest", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    put(env, "readmission/doc-d.md", "doc-d")
    for body in (json.dumps(s3_event("readmission/doc-d.md")), "{poison", json.dumps(s3_event("readmission/doc-d.md"))):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    for _ in range(6):
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        if not messages:
            break
        records = [sqs_record(m["Body"]) | {"messageId": m["MessageId"]} for m in messages]
        response = handler({"Records": records}, LocalLambdaContext(aws_request_id="r", deadline_epoch=1e12))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    in_dlq = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in in_dlq] == ["{poison"]
    assert len(indexed("doc-d")) == 2
