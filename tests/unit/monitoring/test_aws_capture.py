"""The cloud capture sink against Firehose's own API model (botocore Stubber validates every
parameter), and the id key from Secrets Manager (moto)."""

from __future__ import annotations

import json
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.stub import Stubber  # type: ignore[import-untyped]
from moto import mock_aws

from clinrisk.capture.firehose_sink import MAX_BATCH_RECORDS, CaptureWriteError, FirehoseCaptureSink, secret_key

STREAM = "clinrisk-dev-capture"


def _client() -> Any:
    return boto3.client("firehose", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _rows(count: int) -> list[dict[str, Any]]:
    return [{"kind": "scored", "task": "readmission", "model_version": 1, "record_key": f"k{i}"} for i in range(count)]


def test_rows_go_as_json_lines_in_batches_of_at_most_500() -> None:
    client = _client()
    with Stubber(client) as stub:
        for batch in (_rows(600)[:MAX_BATCH_RECORDS], _rows(600)[MAX_BATCH_RECORDS:]):
            records = [{"Data": json.dumps(row, separators=(",", ":")).encode() + b"\n"} for row in batch]
            stub.add_response(
                "put_record_batch",
                {"FailedPutCount": 0, "RequestResponses": [{"RecordId": f"r{i}"} for i in range(len(batch))]},
                {"DeliveryStreamName": STREAM, "Records": records},
            )
        FirehoseCaptureSink(client, STREAM).put(_rows(600))
        stub.assert_no_pending_responses()


def test_refused_records_are_sent_again_once_then_reported() -> None:
    client = _client()
    failed = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
    with Stubber(client) as stub:
        stub.add_response(
            "put_record_batch",
            {"FailedPutCount": 1, "RequestResponses": [{"RecordId": "a"}, failed, {"RecordId": "c"}]},
        )
        stub.add_response("put_record_batch", {"FailedPutCount": 1, "RequestResponses": [failed]})
        with pytest.raises(CaptureWriteError, match="refused 1 capture records"):
            FirehoseCaptureSink(client, STREAM).put(_rows(3))
        stub.assert_no_pending_responses()


@mock_aws
def test_the_id_key_comes_from_secrets_manager() -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="clinrisk/id-key", SecretString="ab" * 32)["ARN"]
    assert secret_key(client, arn) == bytes.fromhex("ab" * 32)
