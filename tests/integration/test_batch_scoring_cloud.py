"""Cloud batch scoring: the batch-scoring Lambdas against S3 (moto), with a real trained champion,
chained as the state machine chains them, and the state machine itself in moto's Step Functions
interpreter, Distributed Map and all.

The promise: the cloud writes exactly what `clinrisk score` writes for the same file (same rows,
same scores, same factor texts, byte for byte) and reports the same problems by row number,
whatever the chunking, including a patient whose encounters fall in different chunks.

Mocks sit only at the AWS boundary: S3, SNS, SQS, Lambda and Step Functions are moto. moto's
Lambda without Docker runs no code, so `lambda_dispatch` replaces its Invoke with a call of our
real handler, returning what the Lambda runtime returns (a `FunctionError` with the exception's
class name as `errorType` when the handler raises).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pandas as pd
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from cdk_app.bundling import FUNCTION_SPECS, build_lambda_bundle, find_interpreter, lambda_runtime_stand_in
from cdk_app.state_machine import load_definition
from clinrisk.adapters.aws import S3ObjectStore
from clinrisk.batch import cloud as batch_cloud
from clinrisk.batch.local import BatchReport, load_champion, score_file
from clinrisk.data.tables import write_table
from clinrisk.registry.serving_pointer import POINTER_KEY, read_pointer
from clinrisk.runtime import build_store
from clinrisk.serving.scoring import Bands
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, PATIENT_ID
from lambdas.batch_scoring import handler
from lambdas.common import BadEventError
from tests.conftest import cohort, local_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
DATA_BUCKET = "clinrisk-data-test"
ARTIFACTS_BUCKET = "clinrisk-artifacts-test"
INPUT_PREFIX = f"s3://{DATA_BUCKET}/batch-scoring/input/"
OUTPUT_PREFIX = f"s3://{DATA_BUCKET}/batch-scoring/output/"
ROWS = 400
CHUNK_ROWS = 100  # four chunks of 400 rows
SPREAD_PATIENT = 987_654_321
SPREAD_ENCOUNTERS = [900_000_004, 900_000_003, 900_000_002, 900_000_001]
SPREAD_ROWS = [10, 120, 260, 390]  # 0-based, one in each chunk, ids descending
UNKNOWN_CATEGORY = "Martian"  # planted values that must never appear in any output or message
NOT_A_NUMBER = "ZZPLENTY42"
BAD_ROWS = {"race": 101, "num_medications": 150}  # 1-based data rows
FUNCTION_NAMES = {"plan": "clinrisk-batch-plan", "score": "clinrisk-batch-score", "finish": "clinrisk-batch-finish"}


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "clinrisk-batch-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:clinrisk-batch-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


# --------------------------------------------------------------------------- data


def _encounters(bad_rows: bool = False) -> pd.DataFrame:
    """One patient's encounters spread over every chunk, in descending id order, so that their
    prior-encounter counts need the whole file; optionally two rows that break the schema."""
    frame = cohort(ROWS, 23).copy()
    frame.loc[frame.index[SPREAD_ROWS], PATIENT_ID] = SPREAD_PATIENT
    frame.loc[frame.index[SPREAD_ROWS], ENCOUNTER_ID] = SPREAD_ENCOUNTERS
    if bad_rows:
        frame = frame.astype({"num_medications": str})
        frame.loc[frame.index[BAD_ROWS["race"] - 1], "race"] = UNKNOWN_CATEGORY
        frame.loc[frame.index[BAD_ROWS["num_medications"] - 1], "num_medications"] = NOT_A_NUMBER
    return frame


def _csv_file(frame: pd.DataFrame, path: Path) -> Path:
    write_table(frame, path)
    return path


@dataclass(frozen=True)
class Expected:
    """What `clinrisk score` writes and reports for a file."""

    csv: bytes
    report: BatchReport


def _clinrisk_score(promoted_home: Path, source: Path, tmp_path: Path, *, factors: int) -> Expected:
    settings = local_settings(promoted_home, backend="local")
    destination = tmp_path / "expected.csv"
    report = score_file(
        source,
        destination,
        model=load_champion(build_store(settings)),
        bands=Bands.from_settings(settings),
        chunk_rows=64,
        top_k=factors,
        strict=False,
        on_progress=lambda _: None,
    )
    return Expected(csv=destination.read_bytes(), report=report)


# --------------------------------------------------------------------------- the cloud (moto)


@dataclass
class Cloud:
    s3: Any
    data: S3ObjectStore
    artifacts: S3ObjectStore

    def put_input(self, name: str, body: bytes) -> str:
        self.s3.put_object(Bucket=DATA_BUCKET, Key=f"batch-scoring/input/{name}", Body=body)
        return f"{INPUT_PREFIX}{name}"

    def output_keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix="batch-scoring/output/")
        return [item["Key"] for item in listed.get("Contents", [])]

    def read(self, uri: str) -> bytes:
        return self.data.read_bytes(uri.removeprefix(f"s3://{DATA_BUCKET}/"))


@pytest.fixture
def cloud(promoted_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """moto S3 with the data and artifacts buckets, the champion's files and the serving pointer
    copied from the locally trained `promoted_home`, and the Lambdas' environment."""
    for name, value in {
        "CLINRISK_BACKEND": "aws",
        "CLINRISK_ARTIFACTS_BUCKET": ARTIFACTS_BUCKET,
        "CLINRISK_AWS_REGION": REGION,
        "CLINRISK_BATCH_WORK_BUCKET": DATA_BUCKET,
        "CLINRISK_BATCH_INPUT_LOCATIONS": json.dumps([INPUT_PREFIX]),
        "CLINRISK_BATCH_OUTPUT_LOCATIONS": json.dumps([OUTPUT_PREFIX]),
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "clinrisk",
    }.items():
        monkeypatch.setenv(name, value)
    local = build_store(local_settings(promoted_home, backend="local"))
    pointer = read_pointer(local)
    assert pointer is not None
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (DATA_BUCKET, ARTIFACTS_BUCKET):
            s3.create_bucket(Bucket=bucket)
        artifacts = S3ObjectStore(ARTIFACTS_BUCKET, client=s3)
        artifacts.upload_dir(promoted_home / "store" / pointer.artifact_prefix, pointer.artifact_prefix)
        artifacts.write_bytes(POINTER_KEY, local.read_bytes(POINTER_KEY))
        handler.ports.cache_clear()  # the handlers' clients must be moto's
        yield Cloud(s3=s3, data=S3ObjectStore(DATA_BUCKET, client=s3), artifacts=artifacts)
        handler.ports.cache_clear()


def _invoke(function: Callable[[Any, Any], dict[str, Any]], event: dict[str, Any]) -> dict[str, Any]:
    # Through JSON both ways, as Lambda passes events and results.
    return json.loads(json.dumps(function(json.loads(json.dumps(event)), FakeLambdaContext())))


def _run_handlers(request: dict[str, Any], run_id: str = "run-1") -> dict[str, Any]:
    """Plan → ScoreChunk for every manifest item (with the Map's ItemSelector) → Finish."""
    plan = _invoke(handler.plan, {"run_id": run_id, "request": request})
    manifest = json.loads(S3ObjectStore(DATA_BUCKET).read_bytes(plan["manifest_key"]))
    for item in manifest:
        event = {"run_id": plan["run_id"], "chunk": item, "model": plan["model"], "factors": plan["factors"]}
        _invoke(handler.score_chunk, event)
    return _invoke(handler.finish, {"run_id": run_id})


# --------------------------------------------------------------------------- the handlers, chained


@pytest.mark.parametrize(("suffix", "factors"), [(".csv", 3), (".csv.gz", 0)], ids=["csv-factors", "gzip"])
def test_cloud_batch_writes_what_clinrisk_score_writes(
    cloud: Cloud, promoted_home: Path, tmp_path: Path, suffix: str, factors: int
) -> None:
    source = _csv_file(_encounters(bad_rows=True), tmp_path / f"in{suffix}")
    expected = _clinrisk_score(promoted_home, source, tmp_path, factors=factors)
    request: dict[str, Any] = {
        "input_uri": cloud.put_input(f"in{suffix}", source.read_bytes()),
        "output_uri": f"{OUTPUT_PREFIX}scores{suffix}",
        "factors": factors,
        "chunk_rows": CHUNK_ROWS,
    }

    summary = _run_handlers(request)

    written = cloud.read(request["output_uri"])
    assert (gzip.decompress(written) if suffix.endswith(".gz") else written) == expected.csv
    report = expected.report
    assert (summary["rows_read"], summary["rows_scored"], summary["rows_invalid"]) == (
        report.rows_read,
        report.rows_scored,
        report.rows_invalid,
    )
    assert summary["problems"] == [problem.model_dump(mode="json") for problem in report.problems]
    assert summary["model_version"] == report.model_version
    assert json.loads(cloud.read(summary["summary_uri"])) == summary
    text = json.dumps(summary) + written.decode(errors="replace")
    assert UNKNOWN_CATEGORY not in text and NOT_A_NUMBER not in text


def test_prior_encounters_span_chunks(cloud: Cloud, tmp_path: Path) -> None:
    # Each of the patient's four encounters is in a different chunk, ids descending in file order.
    source = _csv_file(_encounters(), tmp_path / "in.csv")
    request = {"input_uri": cloud.put_input("in.csv", source.read_bytes()), "output_uri": f"{OUTPUT_PREFIX}o.csv"}
    plan = _invoke(handler.plan, {"run_id": "spread", "request": request | {"chunk_rows": CHUNK_ROWS}})

    priors: dict[int, int] = {}
    for index in range(plan["chunks"]):
        key = batch_cloud.chunk_key(batch_cloud.BatchSettings(), "spread", index)
        payload = batch_cloud.ChunkPayload.model_validate_json(gzip.decompress(cloud.data.read_bytes(key)))
        priors |= {r[ENCOUNTER_ID]: p for r, p in zip(payload.records, payload.priors, strict=True)}

    assert plan["chunks"] == ROWS // CHUNK_ROWS
    assert [priors[e] for e in sorted(SPREAD_ENCOUNTERS)] == [0, 1, 2, 3]


def test_every_chunk_is_scored_by_the_version_plan_pinned(cloud: Cloud, tmp_path: Path) -> None:
    source = _csv_file(_encounters(), tmp_path / "in.csv")
    request = {"input_uri": cloud.put_input("in.csv", source.read_bytes()), "output_uri": f"{OUTPUT_PREFIX}o.csv"}
    plan = _invoke(handler.plan, {"run_id": "pinned", "request": request | {"chunk_rows": CHUNK_ROWS}})
    # A promotion lands mid-run: the pointer now names another version, whose files do not exist.
    pointer = json.loads(cloud.artifacts.read_bytes(POINTER_KEY))
    pointer |= {"version": pointer["version"] + 1, "artifact_prefix": "runs/elsewhere/model", "checksum": "0" * 64}
    cloud.artifacts.write_bytes(POINTER_KEY, json.dumps(pointer).encode())

    manifest = json.loads(cloud.data.read_bytes(plan["manifest_key"]))
    for item in manifest:
        _invoke(handler.score_chunk, {"run_id": "pinned", "chunk": item, "model": plan["model"], "factors": 0})
    summary = _invoke(handler.finish, {"run_id": "pinned"})

    output = pd.read_csv(io.BytesIO(cloud.read(summary["output_uri"])))
    assert set(output["model_version"]) == {plan["model"]["version"]} == {summary["model_version"]}
    assert len(output) == ROWS


def test_a_model_that_does_not_match_its_checksum_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    source = _csv_file(_encounters(), tmp_path / "in.csv")
    request = {"input_uri": cloud.put_input("in.csv", source.read_bytes()), "output_uri": f"{OUTPUT_PREFIX}o.csv"}
    plan = _invoke(handler.plan, {"run_id": "tampered", "request": request})
    prefix = plan["model"]["artifact_prefix"]
    key = cloud.s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix=f"{prefix}/")["Contents"][0]["Key"]
    cloud.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=b"tampered")
    item = json.loads(cloud.data.read_bytes(plan["manifest_key"]))[0]

    with pytest.raises(batch_cloud.PinnedModelError, match="does not match its checksum"):
        _invoke(handler.score_chunk, {"run_id": "tampered", "chunk": item, "model": plan["model"], "factors": 0})


def test_finish_refuses_a_run_with_an_unscored_chunk(cloud: Cloud, tmp_path: Path) -> None:
    source = _csv_file(_encounters(), tmp_path / "in.csv")
    request = {"input_uri": cloud.put_input("in.csv", source.read_bytes()), "output_uri": f"{OUTPUT_PREFIX}o.csv"}
    plan = _invoke(handler.plan, {"run_id": "partial", "request": request | {"chunk_rows": CHUNK_ROWS}})
    first = json.loads(cloud.data.read_bytes(plan["manifest_key"]))[0]
    _invoke(handler.score_chunk, {"run_id": "partial", "chunk": first, "model": plan["model"], "factors": 0})

    with pytest.raises(batch_cloud.BatchWorkError, match="chunk 1 of run partial was not scored"):
        _invoke(handler.finish, {"run_id": "partial"})
    assert cloud.output_keys() == []


def test_all_rows_invalid_gives_a_header_only_output_and_a_summary(cloud: Cloud, tmp_path: Path) -> None:
    frame = cohort(50, 3).copy()
    frame["race"] = UNKNOWN_CATEGORY
    source = _csv_file(frame, tmp_path / "in.csv")
    request = {"input_uri": cloud.put_input("in.csv", source.read_bytes()), "output_uri": f"{OUTPUT_PREFIX}o.csv"}

    plan = _invoke(handler.plan, {"run_id": "none-valid", "request": request})
    summary = _invoke(handler.finish, {"run_id": "none-valid"})

    assert plan["chunks"] == 0
    assert cloud.read(summary["output_uri"]).decode() == ",".join(batch_cloud.output_columns(0)) + "\n"
    assert (summary["rows_scored"], summary["rows_invalid"]) == (0, 50)


# --------------------------------------------------------------------------- bad input


def _valid_request(cloud: Cloud, tmp_path: Path) -> dict[str, Any]:
    source = _csv_file(cohort(50, 3), tmp_path / "in.csv")
    return {"input_uri": cloud.put_input("in.csv", source.read_bytes()), "output_uri": f"{OUTPUT_PREFIX}o.csv"}


BAD_REQUESTS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], type[Exception], str]] = {
    "input in an unknown bucket": (
        lambda r: r | {"input_uri": "s3://someone-elses-bucket/batch-scoring/input/in.csv"},
        batch_cloud.LocationNotAllowedError,
        "request.input_uri must be under one of",
    ),
    "output outside the output prefix": (
        lambda r: r | {"output_uri": f"s3://{DATA_BUCKET}/cohorts/overwritten.csv"},
        batch_cloud.LocationNotAllowedError,
        "request.output_uri must be under one of",
    ),
    "missing object": (
        lambda r: r | {"input_uri": f"{INPUT_PREFIX}absent.csv"},
        batch_cloud.BatchInputNotFoundError,
        "no object at",
    ),
    "parquet input": (
        lambda r: r | {"input_uri": f"{INPUT_PREFIX}in.parquet"},
        BadEventError,
        "request.input_uri",
    ),
    "misspelt option": (lambda r: r | {"strikt": True}, BadEventError, "request.strikt"),
    "chunk too small": (lambda r: r | {"chunk_rows": 5}, BadEventError, "request.chunk_rows"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_fails_plan_with_its_named_error(case: str, cloud: Cloud, tmp_path: Path) -> None:
    change, error, message = BAD_REQUESTS[case]
    with pytest.raises(error, match=message):
        _invoke(handler.plan, {"run_id": "bad", "request": change(_valid_request(cloud, tmp_path))})
    assert cloud.output_keys() == []


def test_no_champion_fails_plan(cloud: Cloud, tmp_path: Path) -> None:
    cloud.s3.delete_object(Bucket=ARTIFACTS_BUCKET, Key=POINTER_KEY)
    with pytest.raises(batch_cloud.NoChampionError, match="no champion"):
        _invoke(handler.plan, {"run_id": "no-champion", "request": _valid_request(cloud, tmp_path)})


def test_missing_column_fails_plan_naming_it(cloud: Cloud, tmp_path: Path) -> None:
    source = _csv_file(cohort(50, 3).drop(columns=["age"]), tmp_path / "no-age.csv")
    request = {"input_uri": cloud.put_input("no-age.csv", source.read_bytes()), "output_uri": f"{OUTPUT_PREFIX}o.csv"}
    with pytest.raises(batch_cloud.ClinriskError, match="missing_column: 'age'"):
        _invoke(handler.plan, {"run_id": "no-age", "request": request})


def test_strict_rejects_invalid_rows_by_row_number_and_scores_nothing(cloud: Cloud, tmp_path: Path) -> None:
    source = _csv_file(_encounters(bad_rows=True), tmp_path / "in.csv")
    request = {
        "input_uri": cloud.put_input("in.csv", source.read_bytes()),
        "output_uri": f"{OUTPUT_PREFIX}o.csv",
        "strict": True,
        "chunk_rows": CHUNK_ROWS,
    }
    with pytest.raises(batch_cloud.BatchRowsRejectedError) as rejected:
        _invoke(handler.plan, {"run_id": "strict", "request": request})

    message = str(rejected.value)
    assert "2 of 400 rows are invalid" in message
    for row in BAD_ROWS.values():
        assert f"(row {row})" in message
    assert UNKNOWN_CATEGORY not in message and NOT_A_NUMBER not in message
    assert cloud.output_keys() == []
    # The first chunk was written before the first bad row (row 101) was seen; nothing after it.
    chunks = cloud.s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix="batch-scoring/work/strict/chunks/")
    assert [item["Key"].rsplit("/", 1)[1] for item in chunks.get("Contents", [])] == ["000000.json.gz"]


# --------------------------------------------------------------------------- the state machine in moto


@dataclass(frozen=True)
class Machine:
    arn: str
    stepfunctions: Any
    notifications: Callable[[], list[dict[str, str]]]

    def run(self, name: str, execution_input: dict[str, Any]) -> dict[str, Any]:
        started = self.stepfunctions.start_execution(
            stateMachineArn=self.arn, name=name, input=json.dumps(execution_input)
        )
        # Polls a status with a generous bound; nothing is asserted about how long it took.
        for _ in range(600):
            described: dict[str, Any] = self.stepfunctions.describe_execution(executionArn=started["executionArn"])
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.2)
        pytest.fail(f"execution {name} still running after 120 s")


def _lambda_error(error: Exception) -> bytes:
    """What the Lambda runtime returns for an unhandled exception."""
    return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()


@pytest.fixture
def lambda_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's Lambda Invoke (no Docker) calls our real handler for each batch function."""
    handlers = {
        FUNCTION_NAMES["plan"]: handler.plan,
        FUNCTION_NAMES["score"]: handler.score_chunk,
        FUNCTION_NAMES["finish"]: handler.finish,
    }

    def invoke(self: LambdaSimpleBackend, function_name: str, *request: Any) -> bytes:
        _qualifier, body, _headers, response = request  # as moto's Invoke passes them
        target = handlers[function_name.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]]
        try:
            return json.dumps(target(json.loads(body), FakeLambdaContext())).encode()
        except Exception as error:
            response["x-amz-function-error"] = "Unhandled"
            return _lambda_error(error)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)


def _code() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("placeholder.py", "")  # never run: lambda_dispatch runs the real handler
    return archive.getvalue()


@pytest.fixture
def machine(cloud: Cloud, lambda_dispatch: None) -> Machine:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="clinrisk-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    functions = boto3.client("lambda", region_name=REGION)
    arns = {
        key: functions.create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="placeholder.handler", Code={"ZipFile": _code()}
        )["FunctionArn"]
        for key, name in FUNCTION_NAMES.items()
    }
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="clinrisk-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def notifications() -> list[dict[str, str]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    definition = load_definition(
        {
            "AlertsTopicArn": topic,
            "PlanFunctionArn": arns["plan"],
            "ScoreChunkFunctionArn": arns["score"],
            "FinishFunctionArn": arns["finish"],
            "WorkBucket": DATA_BUCKET,
            "MapResultsPrefix": "batch-scoring/map-results",
        },
        batch_cloud.DEFINITION_FILE,
    )
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    arn = stepfunctions.create_state_machine(name="clinrisk-batch", definition=json.dumps(definition), roleArn=role)
    return Machine(arn=arn["stateMachineArn"], stepfunctions=stepfunctions, notifications=notifications)


def test_the_state_machine_scores_a_file_as_clinrisk_score_does(
    machine: Machine, cloud: Cloud, promoted_home: Path, tmp_path: Path
) -> None:
    source = _csv_file(_encounters(bad_rows=True), tmp_path / "in.csv")
    expected = _clinrisk_score(promoted_home, source, tmp_path, factors=2)
    request: dict[str, Any] = {
        "input_uri": cloud.put_input("in.csv", source.read_bytes()),
        "output_uri": f"{OUTPUT_PREFIX}scores.csv",
        "factors": 2,
        "chunk_rows": CHUNK_ROWS,
    }

    execution = machine.run("batch-ok", request)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert cloud.read(request["output_uri"]) == expected.csv
    output = json.loads(execution["output"])
    assert output["plan"]["chunks"] == ROWS // CHUNK_ROWS
    assert output["finished"]["rows_scored"] == expected.report.rows_scored == ROWS - len(BAD_ROWS)
    assert output["map_run"]["MapRunArn"]
    [notification] = machine.notifications()
    assert notification["Subject"] == "clinrisk: batch scoring finished"
    assert f"scored {ROWS - len(BAD_ROWS)} of {ROWS} rows" in notification["Message"]
    assert UNKNOWN_CATEGORY not in notification["Message"]


@pytest.mark.parametrize(
    ("case", "error"),
    [("unknown bucket", "LocationNotAllowedError"), ("missing object", "BatchInputNotFoundError")],
)
def test_bad_input_ends_the_run_failed_and_notified(
    machine: Machine, cloud: Cloud, tmp_path: Path, case: str, error: str
) -> None:
    request = _valid_request(cloud, tmp_path)
    if case == "unknown bucket":
        request["input_uri"] = "s3://someone-elses-bucket/batch-scoring/input/in.csv"
    else:
        request["input_uri"] = f"{INPUT_PREFIX}absent.csv"

    execution = machine.run("batch-bad", request)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "BatchScoringFailed"
    assert json.loads(execution["cause"])["Error"] == error
    [notification] = machine.notifications()
    assert notification["Subject"] == "clinrisk: batch scoring failed"
    assert error in notification["Message"]
    assert cloud.output_keys() == []


def test_a_failing_chunk_fails_the_map_and_the_run(machine: Machine, cloud: Cloud, tmp_path: Path) -> None:
    # The champion's files are corrupted after promotion: Plan pins them, every chunk refuses them.
    pointer = json.loads(cloud.artifacts.read_bytes(POINTER_KEY))
    listed = cloud.s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix=f"{pointer['artifact_prefix']}/")
    cloud.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=listed["Contents"][0]["Key"], Body=b"corrupt")
    request = _valid_request(cloud, tmp_path)

    execution = machine.run("batch-chunk-fails", request)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "BatchScoringFailed"
    [notification] = machine.notifications()
    assert notification["Subject"] == "clinrisk: batch scoring failed"
    assert cloud.output_keys() == []


# --------------------------------------------------------------------------- the stages in their Lambda bundles

# Runs under the bundle's interpreter with -I -S -B, as `cdk_app.bundling.smoke_import` does: only
# the bundle, the runtime stand-in (boto3) and the standard library can be imported. It runs one
# stage on directory stores and prints its result and which heavy modules got imported.
_BUNDLE_SCRIPT = """
import json, sys
split = sys.argv.index("--")
sys.path[:0] = sys.argv[1:split]
stage, root, event = sys.argv[split + 1], sys.argv[split + 2], json.loads(sys.argv[split + 3])
from pathlib import Path
from clinrisk.batch import cloud as batch_cloud
from clinrisk.adapters.local import DirectoryObjectStore
from clinrisk.serving.scoring import Bands
from clinrisk.settings import Settings
root = Path(root)
ports = batch_cloud.BatchPorts(
    settings=batch_cloud.BatchSettings(
        work_bucket="data", input_locations=["s3://data/in/"], output_locations=["s3://data/out/"]
    ),
    models=DirectoryObjectStore(root / "artifacts"),
    work=DirectoryObjectStore(root / "data"),
    bucket=lambda name: DirectoryObjectStore(root / name),
    bands=Bands.from_settings(Settings()),
)
stages = {
    "plan": (batch_cloud.PlanInput, batch_cloud.plan_batch),
    "score": (batch_cloud.ScoreChunkInput, batch_cloud.score_chunk),
    "finish": (batch_cloud.FinishInput, batch_cloud.finish_batch),
}
model, function = stages[stage]
result = function(model.model_validate(event), ports=ports).model_dump(mode="json")
heavy = sorted(m for m in ("pandas", "pyarrow", "xgboost", "scipy", "mlflow") if m in sys.modules)
print(json.dumps({"result": result, "imported": heavy}))
"""
LAMBDA_PYTHON = "3.12"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path, Path]:
    """The predict and pipeline bundles built as `make build` builds them, an interpreter of the
    Lambda's Python (or, without one, this one and bundles built for it), and the runtime stand-in."""
    interpreter = find_interpreter(LAMBDA_PYTHON)
    version = LAMBDA_PYTHON if interpreter is not None else f"{sys.version_info.major}.{sys.version_info.minor}"
    root = tmp_path_factory.mktemp("batch-bundles")
    built = {}
    for name in ("predict", "pipeline"):
        spec = FUNCTION_SPECS[name](REPO_ROOT)
        built[name] = build_lambda_bundle(
            spec.requirements, root / name, source_dirs=spec.source_dirs, python_version=version
        ).root
    return built, interpreter or Path(sys.executable), lambda_runtime_stand_in(root / "runtime")


def test_each_stage_runs_from_its_own_lambda_bundle(
    bundles: tuple[dict[str, Path], Path, Path], promoted_home: Path, tmp_path: Path
) -> None:
    """Plan from the pipeline bundle (pandas, no pyarrow); ScoreChunk and Finish from the predict
    bundle (numpy only): the chunk scorer needs no pandas, and the output is still `clinrisk score`'s."""
    built, interpreter, runtime = bundles
    root = tmp_path / "stores"
    local = build_store(local_settings(promoted_home, backend="local"))
    pointer = read_pointer(local)
    assert pointer is not None
    artifacts = root / "artifacts"
    shutil.copytree(promoted_home / "store" / pointer.artifact_prefix, artifacts / pointer.artifact_prefix)
    (artifacts / POINTER_KEY).parent.mkdir(parents=True)
    (artifacts / POINTER_KEY).write_bytes(local.read_bytes(POINTER_KEY))
    source = _csv_file(_encounters(bad_rows=True), root / "data" / "in" / "encounters.csv")
    expected = _clinrisk_score(promoted_home, source, tmp_path, factors=1)

    def run(stage: str, bundle: str, event: dict[str, Any]) -> dict[str, Any]:
        command = [str(interpreter), "-I", "-S", "-B", "-c", _BUNDLE_SCRIPT, str(built[bundle]), str(runtime), "--"]
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
        done = subprocess.run(
            [*command, stage, str(root), json.dumps(event)],
            env=environment, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        output: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        assert "pyarrow" not in output["imported"]
        if bundle == "predict":
            assert output["imported"] == [], f"{stage} imported {output['imported']} in the predict bundle"
        return dict(output["result"])

    request = {
        "input_uri": "s3://data/in/encounters.csv",
        "output_uri": "s3://data/out/scores.csv",
        "factors": 1,
        "chunk_rows": CHUNK_ROWS,
    }
    plan = run("plan", "pipeline", {"run_id": "bundled", "request": request})
    manifest = json.loads((root / "data" / plan["manifest_key"]).read_bytes())
    for item in manifest:
        run("score", "predict", {"run_id": "bundled", "chunk": item, "model": plan["model"], "factors": 1})
    summary = run("finish", "predict", {"run_id": "bundled"})

    assert (root / "data" / "out" / "scores.csv").read_bytes() == expected.csv
    assert summary["rows_scored"] == expected.report.rows_scored
