"""Prediction capture in the app: Firehose → Parquet through the Glue table → the KMS capture bucket,
partitioned by task, date and model version; retention from cdk.json; the predict function wired."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from clinrisk.capture.records import CAPTURE_SCHEMA, PARTITION_COLUMNS
from tests.infrastructure.conftest import Synthesized

FOUNDATION = "clinrisk-dev-foundation"
SERVING = "clinrisk-dev-serving"

pytestmark = pytest.mark.infrastructure


@pytest.fixture(scope="module")
def foundation(synthesized: Synthesized) -> Template:
    return synthesized.template(FOUNDATION)


def _one(template: Template, kind: str) -> dict[str, Any]:
    (resource,) = template.find_resources(kind).values()
    return resource["Properties"]


def test_firehose_writes_kms_encrypted_parquet_partitioned_like_the_local_layout(foundation: Template) -> None:
    stream = _one(foundation, "AWS::KinesisFirehose::DeliveryStream")
    assert stream["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "CUSTOMER_MANAGED_CMK"
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == "captures/" + "".join(f"{p}=!{{partitionKeyFromQuery:{p}}}/" for p in PARTITION_COLUMNS)
    assert s3["DynamicPartitioningConfiguration"] == {"Enabled": True}
    conversion = s3["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True and "ParquetSerDe" in conversion["OutputFormatConfiguration"]["Serializer"]
    assert s3["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"]


def test_the_glue_table_is_the_capture_schema(foundation: Template) -> None:
    table = _one(foundation, "AWS::Glue::Table")["TableInput"]
    columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert columns == [name for name in CAPTURE_SCHEMA if name not in PARTITION_COLUMNS]
    assert [c["Name"] for c in table["PartitionKeys"]] == list(PARTITION_COLUMNS)
    # Every task's inputs fit the one table: a map of column name to text (clinrisk.capture.task_inputs).
    assert {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}["inputs"] == "map<string,string>"


def test_captures_expire_after_the_configured_retention(foundation: Template) -> None:
    foundation.has_resource_properties(
        "AWS::S3::Bucket",
        {"LifecycleConfiguration": {"Rules": Match.array_with([
            Match.object_like({"Id": "ExpireCaptures", "Prefix": "captures/", "ExpirationInDays": 365})
        ])}},
    )  # fmt: skip


def test_the_predict_function_knows_the_stream_and_the_id_key(synthesized: Synthesized) -> None:
    serving = synthesized.template(SERVING)
    functions = serving.find_resources("AWS::Lambda::Function")
    environments = [f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions.values()]
    predict = [e for e in environments if "CLINRISK_MONITORING__FIREHOSE_STREAM" in e]
    assert len(predict) == 1 and "CLINRISK_MONITORING__ID_KEY_SECRET_ARN" in predict[0]
    serving.has_resource_properties(
        "AWS::IAM::Policy",
        {"PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Action": "firehose:PutRecordBatch", "Effect": "Allow"})
        ])}},
    )  # fmt: skip
