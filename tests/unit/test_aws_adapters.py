"""The AWS adapters against the services' own API models: moto for behaviour, botocore Stubber
(which validates parameters against the service model) for the exact requests."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.response import StreamingBody  # type: ignore[import-untyped]
from botocore.stub import Stubber  # type: ignore[import-untyped]
from moto import mock_aws

from clinrisk.adapters.aws import (
    NotificationError,
    S3ObjectStore,
    SnsNotifier,
    TrainingUnavailableError,
    UnavailableTrainer,
    sns_subject,
)
from clinrisk.errors import ClinriskError, ConfigurationError
from clinrisk.ports import ObjectNotFoundError, StoreUnavailableError, TrainingJob
from clinrisk.registry.serving_pointer import POINTER_KEY, read_pointer
from clinrisk.runtime import build_ports
from clinrisk.settings import Settings

REGION = "us-east-1"
BUCKET = "clinrisk-test-artifacts"
KEY_ID = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
TOPIC = "arn:aws:sns:us-east-1:123456789012:clinrisk-alerts"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, so nothing can reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SNS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def store(s3: Any) -> S3ObjectStore:
    return S3ObjectStore(BUCKET, prefix="team/clinrisk", client=s3)


# --------------------------------------------------------------------------- S3 with moto


def test_round_trip_replaces_whole_object_encrypted(store: S3ObjectStore, s3: Any) -> None:
    store.write_bytes("serving/champion.json", b'{"version": 1}')
    store.write_bytes("serving/champion.json", b'{"version": 2}')

    assert store.read_bytes("serving/champion.json") == b'{"version": 2}'
    assert store.exists("serving/champion.json")
    head = s3.head_object(Bucket=BUCKET, Key="team/clinrisk/serving/champion.json")
    assert head["ServerSideEncryption"] == "aws:kms"


def test_missing_key_is_object_not_found(store: S3ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"s3://clinrisk-test-artifacts/team/clinrisk/nope\.json"):
        store.read_bytes("nope.json")
    assert not store.exists("nope.json")


def test_missing_pointer_reads_as_none(store: S3ObjectStore) -> None:
    """The serving pointer relies on the not-found mapping to mean 'no champion yet'."""
    assert read_pointer(store) is None
    assert not store.exists(POINTER_KEY)


def test_missing_bucket_is_store_unavailable(s3: Any) -> None:
    store = S3ObjectStore("no-such-bucket", client=s3)
    with pytest.raises(StoreUnavailableError, match="NoSuchBucket"):
        store.read_bytes("a.json")
    with pytest.raises(StoreUnavailableError, match="ListObjectsV2"):
        store.download_dir("model", Path("unused"))


def test_directory_round_trip_keeps_nested_files(store: S3ObjectStore, s3: Any, tmp_path: Path) -> None:
    source = tmp_path / "model"
    files = {
        "booster.json": b"{}",
        "summary.json": b'{"rows": 3}',
        "calibration/isotonic.json": b"[0, 1]",
        "calibration/deep/er/file.bin": bytes(range(256)),
    }
    for relative, data in files.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(data)
    # A sibling prefix that shares the first characters must not be downloaded with it.
    store.write_bytes("runs/r1/model2/other.json", b"x")

    store.upload_dir(source, "runs/r1/model")
    target = tmp_path / "copy"
    store.download_dir("runs/r1/model", target)

    copied = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert copied == files
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="team/clinrisk/runs/r1/model/")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(f"team/clinrisk/runs/r1/model/{k}" for k in files)


def test_download_pages_through_the_listing(tmp_path: Path) -> None:
    client, stubber = _stubbed("s3")
    stubber.add_response(
        "list_objects_v2",
        {"IsTruncated": True, "NextContinuationToken": "t2", "Contents": [{"Key": "p/m/a.txt"}, {"Key": "p/m/"}]},
        expected_params={"Bucket": BUCKET, "Prefix": "p/m/"},
    )
    stubber.add_response(
        "list_objects_v2",
        {"IsTruncated": False, "Contents": [{"Key": "p/m/sub/b.txt"}]},
        expected_params={"Bucket": BUCKET, "Prefix": "p/m/", "ContinuationToken": "t2"},
    )
    for key, data in (("p/m/a.txt", b"A"), ("p/m/sub/b.txt", b"B")):
        body = StreamingBody(io.BytesIO(data), len(data))
        stubber.add_response("get_object", {"Body": body}, expected_params={"Bucket": BUCKET, "Key": key})

    with stubber:
        S3ObjectStore(BUCKET, prefix="p", client=client).download_dir("m", tmp_path / "m")

    stubber.assert_no_pending_responses()
    assert (tmp_path / "m" / "a.txt").read_bytes() == b"A"
    assert (tmp_path / "m" / "sub" / "b.txt").read_bytes() == b"B"


def test_download_of_empty_prefix_is_object_not_found(store: S3ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match="no objects under"):
        store.download_dir("runs/missing/model", tmp_path / "model")


def test_download_refuses_keys_that_climb_out_of_the_directory(store: S3ObjectStore, s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="team/clinrisk/evil/../../outside.txt", Body=b"x")

    with pytest.raises(ValueError, match="escapes"):
        store.download_dir("evil", tmp_path / "target" / "inner")
    assert not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize("key", ["../secrets.json", "runs/../../x", "a/b/..", "..", "", "/"])
def test_keys_that_escape_the_prefix_are_rejected(store: S3ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match=r"escapes|empty"):
        store.write_bytes(key, b"x")
    with pytest.raises(ValueError, match=r"escapes|empty"):
        store.read_bytes(key)


def test_uri_names_bucket_prefix_and_key() -> None:
    store = S3ObjectStore(BUCKET, prefix="/team/clinrisk/", client=object())
    assert store.uri("serving/champion.json") == f"s3://{BUCKET}/team/clinrisk/serving/champion.json"
    assert store.uri("a//b/./c") == f"s3://{BUCKET}/team/clinrisk/a/b/c"
    assert S3ObjectStore(BUCKET, client=object()).uri("k") == f"s3://{BUCKET}/k"
    with pytest.raises(ValueError, match="escapes"):
        S3ObjectStore(BUCKET, prefix="../other", client=object())


# --------------------------------------------------------------------------- S3 requests (Stubber)


def _stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_put_object_asks_for_sse_kms_with_the_key() -> None:
    client, stubber = _stubbed("s3")
    stubber.add_response(
        "put_object",
        {},
        expected_params={
            "Bucket": BUCKET,
            "Key": "p/serving/champion.json",
            "Body": b"{}",
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": KEY_ID,
        },
    )
    with stubber:
        S3ObjectStore(BUCKET, prefix="p", kms_key_id=KEY_ID, client=client).write_bytes("serving/champion.json", b"{}")
    stubber.assert_no_pending_responses()


def test_put_object_without_key_id_uses_the_bucket_key() -> None:
    client, stubber = _stubbed("s3")
    stubber.add_response(
        "put_object",
        {},
        expected_params={"Bucket": BUCKET, "Key": "k", "Body": b"1", "ServerSideEncryption": "aws:kms"},
    )
    with stubber:
        S3ObjectStore(BUCKET, client=client).write_bytes("k", b"1")
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("NoSuchKey", 404, ObjectNotFoundError),
    ("AccessDenied", 403, StoreUnavailableError),
    ("SlowDown", 503, StoreUnavailableError),
])  # fmt: skip
def test_get_object_errors_map_to_store_errors(code: str, status: int, expected: type[Exception]) -> None:
    client, stubber = _stubbed("s3")
    stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
    with stubber, pytest.raises(expected) as raised:
        S3ObjectStore(BUCKET, client=client).read_bytes("k")
    if expected is StoreUnavailableError:
        assert code in str(raised.value)


def test_unreachable_endpoint_is_store_unavailable() -> None:
    client = boto3.client(
        "s3",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens, the connection is refused
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),
    )
    store = S3ObjectStore(BUCKET, client=client)
    with pytest.raises(StoreUnavailableError, match="EndpointConnectionError"):
        store.read_bytes("k")
    with pytest.raises(StoreUnavailableError, match="EndpointConnectionError"):
        store.write_bytes("k", b"x")
    with pytest.raises(StoreUnavailableError, match="EndpointConnectionError"):
        store.exists("k")


# --------------------------------------------------------------------------- SNS


def test_publish_sends_a_clean_truncated_subject_and_json() -> None:
    client, stubber = _stubbed("sns")
    subject = "clinrisk: run 20240101 failed\r\nat train " + "x" * 200
    expected_subject = ("clinrisk: run 20240101 failed at train " + "x" * 200)[:97] + "..."
    stubber.add_response(
        "publish",
        {"MessageId": "m-1"},
        expected_params={
            "TopicArn": TOPIC,
            "Subject": expected_subject,
            "Message": json.dumps({"outcome": "failed", "version": 3}, sort_keys=True),
        },
    )
    with stubber:
        SnsNotifier(TOPIC, client=client).publish(subject, {"version": 3, "outcome": "failed"})
    stubber.assert_no_pending_responses()
    assert len(expected_subject) == 100


def test_subject_rules() -> None:
    assert sns_subject("short") == "short"
    assert sns_subject("a\nb\tc\x00d") == "a b c d"
    assert sns_subject("y" * 100) == "y" * 100
    assert len(sns_subject("y" * 101)) == 100
    assert sns_subject(" \n ") == ""


def test_blank_subject_is_left_out() -> None:
    client, stubber = _stubbed("sns")
    stubber.add_response("publish", {"MessageId": "m-2"}, expected_params={"TopicArn": TOPIC, "Message": "{}"})
    with stubber:
        SnsNotifier(TOPIC, client=client).publish("\n", {})
    stubber.assert_no_pending_responses()


def test_publish_reaches_a_topic_and_its_subscriber(aws_env: None) -> None:
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="clinrisk-alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

        SnsNotifier(topic).publish("clinrisk: v2 promoted\n" + "z" * 150, {"model_version": 2})

        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1)["Messages"]
        envelope = json.loads(received[0]["Body"])
        assert json.loads(envelope["Message"]) == {"model_version": 2}
        assert envelope["Subject"].startswith("clinrisk: v2 promoted zzz")
        assert len(envelope["Subject"]) == 100


def test_publish_to_a_missing_topic_is_a_notification_error(aws_env: None) -> None:
    with mock_aws(), pytest.raises(NotificationError, match="NotFound") as raised:
        SnsNotifier(TOPIC).publish("s", {"a": 1})
    assert isinstance(raised.value, ClinriskError)


# --------------------------------------------------------------------------- wiring


def test_build_ports_with_aws_backend_gives_s3_backed_ports(s3: Any, tmp_path: Path) -> None:
    settings = Settings(
        backend="aws",
        artifacts_bucket=BUCKET,
        aws_region=REGION,
        alerts_topic_arn=TOPIC,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )

    ports = build_ports(settings)

    assert isinstance(ports.store, S3ObjectStore)
    assert ports.store.bucket == BUCKET
    assert isinstance(ports.notifier, SnsNotifier)
    assert ports.registry.store is ports.store
    assert ports.registry.tracking_uri == settings.tracking_uri
    assert str(ports.registry.lock_path).startswith("/tmp/")
    ports.store.write_bytes("probe.txt", b"ok")
    assert s3.get_object(Bucket=BUCKET, Key="probe.txt")["Body"].read() == b"ok"
    assert read_pointer(ports.store) is None
    with pytest.raises(TrainingUnavailableError, match="Step Functions task"):
        ports.trainer.train(TrainingJob(name="j", channels={}, model_prefix="m", output_prefix="o"))


def test_build_ports_passes_the_kms_key_to_the_store(aws_env: None) -> None:
    settings = Settings(backend="aws", artifacts_bucket=BUCKET, kms_key_id=KEY_ID, mlflow_tracking_uri="sqlite:///x.db")
    store = build_ports(settings).store
    assert isinstance(store, S3ObjectStore)
    assert store.kms_key_id == KEY_ID


def test_aws_backend_without_bucket_is_a_clear_error(aws_env: None) -> None:
    with pytest.raises(ConfigurationError, match="CLINRISK_ARTIFACTS_BUCKET is not set") as raised:
        build_ports(Settings(backend="aws", artifacts_bucket=None, mlflow_tracking_uri="sqlite:///x.db"))
    assert isinstance(raised.value, ClinriskError)
    assert "\n" not in str(raised.value)


def test_aws_backend_without_tracking_uri_is_a_clear_error(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CLINRISK_MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigurationError, match="MLFLOW_TRACKING_URI is not set"):
        build_ports(Settings(backend="aws", artifacts_bucket=BUCKET))


def test_without_topic_only_publishing_fails(aws_env: None) -> None:
    ports = build_ports(Settings(backend="aws", artifacts_bucket=BUCKET, mlflow_tracking_uri="sqlite:///x.db"))
    with pytest.raises(ConfigurationError, match="CLINRISK_ALERTS_TOPIC_ARN is not set"):
        ports.notifier.publish("s", {})


def test_unavailable_trainer_says_where_training_runs() -> None:
    with pytest.raises(TrainingUnavailableError, match="SageMaker training job"):
        UnavailableTrainer().train(TrainingJob(name="j", channels={}, model_prefix="m", output_prefix="o"))
