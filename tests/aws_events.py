"""Events as AWS services send them, for tests of the functions they start: field for field as the
services' documentation shows them (S3 via EventBridge, an SQS batch for Lambda, CloudWatch's alarm
state change), with only the values ours.

Sources: Amazon S3 User Guide, "EventBridge event message structure" (Object Created); AWS Lambda
Developer Guide, "Using Lambda with Amazon SQS" (example SQS message event); Amazon CloudWatch User
Guide, "Alarm events and EventBridge" (state change for a single-metric and a metric-math alarm).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"


def s3_object_created(bucket: str, key: str, *, size: int = 100) -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": ACCOUNT, "time": "2027-01-15T10:00:00Z", "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0", "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": "b1946ac92492d2347c6235b4d2611184",
                       "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
            "request-id": "N4N7GDK58NMKJ12R", "requester": ACCOUNT, "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }  # fmt: skip


def sqs_batch(*bodies: tuple[str, Any], queue: str = "clinrisk-outcomes") -> dict[str, Any]:
    """An SQS event for Lambda: (message id, body) pairs; a body that is not a str is sent as JSON."""
    records = []
    for message_id, body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        records.append({
            "messageId": message_id, "receiptHandle": f"AQEB{message_id}", "body": text,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1736935200000",
                           "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1736935200001"},
            "messageAttributes": {}, "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
            "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
            "awsRegion": REGION,
        })  # fmt: skip
    return {"Records": records}


def alarm_state_change(
    alarm_name: str,
    *,
    state: str,
    previous: str,
    timestamp: str = "2027-01-15T10:05:00.000+0000",
    metrics: list[dict[str, Any]] | None = None,
    alarm_arn: str | None = None,
) -> dict[str, Any]:
    """CloudWatch's "CloudWatch Alarm State Change" event for `alarm_name` going `previous` → `state`."""
    arn = alarm_arn or f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm_name}"
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": ACCOUNT, "time": timestamp[:19] + "Z", "region": REGION,
        "resources": [arn],
        "detail": {
            "alarmName": alarm_name,
            "state": {"value": state, "reason": f"Threshold Crossed: {state}", "timestamp": timestamp},
            "previousState": {"value": previous, "reason": f"was {previous}",
                              "timestamp": "2027-01-15T09:05:00.000+0000"},
            "configuration": {"description": "clinrisk", "metrics": metrics or []},
        },
    }  # fmt: skip
