"""The cloud capture sink (Firehose PutRecordBatch of JSON lines) and the id key from Secrets Manager.

Firehose converts the JSON to Parquet through the Glue table (`CAPTURE_SCHEMA`) and partitions by
task, date and model version from the record's own fields. No pyarrow or pandas here: this runs in
the predict Lambda.
"""

from __future__ import annotations

import json
from typing import Any

from clinrisk.errors import ClinriskError

MAX_BATCH_RECORDS = 500  # PutRecordBatch limits
MAX_BATCH_BYTES = 4 * 1024 * 1024


class CaptureWriteError(ClinriskError):
    """Firehose refused some records even after one retry."""


class FirehoseCaptureSink:
    def __init__(self, client: Any, stream: str) -> None:
        self.client = client
        self.stream = stream

    def put(self, rows: list[dict[str, Any]]) -> None:
        batch: list[bytes] = []
        size = 0
        for row in rows:
            data = (json.dumps(row, separators=(",", ":")) + "\n").encode()
            if batch and (len(batch) == MAX_BATCH_RECORDS or size + len(data) > MAX_BATCH_BYTES):
                self._send(batch)
                batch, size = [], 0
            batch.append(data)
            size += len(data)
        if batch:
            self._send(batch)

    def _send(self, batch: list[bytes]) -> None:
        """Send, then resend once only the records Firehose refused (throttling, say)."""
        for _attempt in range(2):
            answer = self.client.put_record_batch(
                DeliveryStreamName=self.stream, Records=[{"Data": data} for data in batch]
            )
            if not answer.get("FailedPutCount"):
                return
            batch = [
                data for data, result in zip(batch, answer["RequestResponses"], strict=True) if "ErrorCode" in result
            ]
        raise CaptureWriteError(f"Firehose refused {len(batch)} capture records")


def secret_key(client: Any, secret_arn: str) -> bytes:
    """The HMAC id key: the secret's string, hex-encoded (as the CDK app generates it)."""
    value = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        return value.encode()
