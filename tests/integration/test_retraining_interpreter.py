"""The retraining state machine's definition, run by moto's Step Functions interpreter with our
real handlers behind every Lambda state.

`mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})`
runs the definition (Lambda tasks, Choice, Wait, the aws-sdk SageMaker polling loop, SNS tasks,
`.waitForTaskToken` with TimeoutSecondsPath, intrinsic functions, CausePath) against moto's S3,
SNS, SQS, SageMaker, Secrets Manager and Step Functions. Two stand-ins sit at the AWS boundary,
each doing what the AWS service would do, never replacing our code:

- the Lambda runtime: moto's Docker-less Lambda does not run code, so `LambdaRuntime` hands each
  Invoke to the real `lambdas.<name>.handler.handler` and returns its JSON (or, for an exception,
  the error document and `X-Amz-Function-Error: Unhandled`, as the Python runtime does);
- the SageMaker training service: moto records a job but trains nothing, so
  `tests.sagemaker_training.TrainingService` runs `sagemaker_jobs/train.py` on the job's channels
  (real XGBoost) and uploads model.tar.gz where DescribeTrainingJob's S3ModelArtifacts points.

Everything else is real: validation, training, evaluation, the gate, MLflow (SQLite) and its
registry, the serving pointer in S3, the notifications that reach an SQS subscriber.

The world (resources, and one run that makes a champion) is built once per module; each test
snapshots the champion and the serving pointer before its run and checks them after.
"""

from __future__ import annotations

import importlib
import io
import json
import time
import traceback
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws
from moto.core.config import DefaultConfig

from cdk_app.state_machine import load_definition, training_source_substitutions
from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
from clinrisk.registry.approval import signing_secret
from clinrisk.registry.model_registry import Registry
from clinrisk.registry.serving_pointer import POINTER_KEY, pointer_key
from clinrisk.settings import task_model_name
from clinrisk.tasks.readmission.synth import generate_cohort
from lambdas import common
from tests.heart_synthetic import heart_frame, write_site_file
from tests.sagemaker_training import TrainingService

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

REGION = "us-east-1"
DATA_BUCKET = "clinrisk-data-test"
ARTIFACTS_BUCKET = "clinrisk-artifacts-test"
SOURCE_BUCKET = "cdk-assets-test"
APPROVAL_URL = "https://api.example.org/v1/approvals/decision"
# Function name → the package under lambdas/ whose handler the Lambda runs.
FUNCTIONS = {
    "clinrisk-validate": "validate",
    "clinrisk-evaluate": "evaluate",
    "clinrisk-promote": "promote",
    "clinrisk-approval-request": "approval_request",
}
MOTO_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
# A guard against a hung run, not a timing assertion: no test depends on how long a run takes.
RUN_DEADLINE_SECONDS = 600


# --------------------------------------------------------------------------- the Lambda runtime


class LambdaRuntime:
    """Stands in for the Lambda service's runtime, which moto's Docker-less Lambda lacks."""

    invocations: list[tuple[str, dict[str, Any]]]

    def __init__(self) -> None:
        self.invocations = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        runtime = self

        def invoke(  # noqa: PLR0917 - LambdaSimpleBackend.invoke's own signature
            backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            return runtime.invoke(function_name.rsplit(":", 1)[-1], json.loads(body), response_headers)

        monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)

    def invoke(self, name: str, event: dict[str, Any], response_headers: dict[str, str]) -> bytes:
        self.invocations.append((name, event))
        module = importlib.import_module(f"lambdas.{FUNCTIONS[name]}.handler")
        context = LocalLambdaContext(aws_request_id=f"req-{len(self.invocations)}", deadline_epoch=time.time() + 900,
                                     function_name=name)  # fmt: skip
        try:
            result = module.handler(event, context)
        except Exception as error:  # the Python runtime's error document for an unhandled exception
            response_headers["x-amz-function-error"] = "Unhandled"
            document = {"errorMessage": str(error), "errorType": type(error).__name__,
                        "stackTrace": traceback.format_tb(error.__traceback__)}  # fmt: skip
            return json.dumps(document).encode()
        return json.dumps(result).encode()


# --------------------------------------------------------------------------- the world


@dataclass
class Execution:
    name: str
    status: str
    error: str | None
    cause: str | None
    states: list[str]
    output: dict[str, Any] | None


@dataclass
class World:
    home: Path
    clients: dict[str, Any]
    substitutions: dict[str, str]
    queues: dict[str, str]
    training: TrainingService
    runtime: LambdaRuntime = field(default_factory=LambdaRuntime)
    machines: dict[tuple[tuple[str, str], ...], str] = field(default_factory=dict)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"alerts": [], "approvals": []})
    champion_run: Execution | None = None

    def environment(self) -> dict[str, str]:
        """The Lambdas' environment, as the CDK app sets it."""
        return {
            "CLINRISK_BACKEND": "aws",
            "CLINRISK_HOME": str(self.home),
            "CLINRISK_ARTIFACTS_BUCKET": ARTIFACTS_BUCKET,
            "CLINRISK_AWS_REGION": REGION,
            "CLINRISK_ALERTS_TOPIC_ARN": self.substitutions["AlertsTopicArn"],
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.home / 'mlflow.db'}",
            "CLINRISK_APPROVALS_TOPIC_ARN": self.clients["approvals_topic"],
            "CLINRISK_APPROVAL_SECRET_ARN": self.clients["secret_arn"],
            "CLINRISK_APPROVAL_BASE_URL": APPROVAL_URL,
            # Few test rows: the gate checks a sound model, not the UCI floors (tests/conftest.py).
            "CLINRISK_GATE__AUC_FLOOR": "0.5",
            "CLINRISK_GATE__MAX_SUBGROUP_AUC_GAP": "1.0",
            "CLINRISK_BOOTSTRAP_ROUNDS": "20",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "clinrisk",
        }

    def enter(self, patch: pytest.MonkeyPatch, **overrides: str) -> None:
        """Environment and boundary hooks for a run; every Lambda starts cold."""
        for name, value in {**self.environment(), **overrides}.items():
            patch.setenv(name, value)
        # On AWS the tracking server stores run artifacts; this in-process stand-in keeps them in ./mlruns.
        patch.chdir(self.home)
        self.runtime.install(patch)
        self.training.install(patch)
        cold_start()

    def machine(self, **overrides: str) -> str:
        """The state machine made from the definition with these substitutions (created once)."""
        key = tuple(sorted(overrides.items()))
        if key not in self.machines:
            definition = load_definition({**self.substitutions, **overrides})
            created = self.clients["sfn"].create_state_machine(
                name=f"clinrisk-retraining-{len(self.machines)}",
                definition=json.dumps(definition),
                roleArn=self.clients["machine_role"],
            )
            self.machines[key] = created["stateMachineArn"]
        return self.machines[key]

    def start(self, name: str, execution_input: Any, **overrides: str) -> str:
        started = self.clients["sfn"].start_execution(
            stateMachineArn=self.machine(**overrides), name=name, input=json.dumps(execution_input)
        )
        return str(started["executionArn"])

    def finish(self, arn: str) -> Execution:
        sfn = self.clients["sfn"]
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise AssertionError(f"execution {arn} still running after {RUN_DEADLINE_SECONDS} s")
            time.sleep(0.1)
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        output = json.loads(described["output"]) if described.get("output") else None
        return Execution(described["name"], described["status"], described.get("error"), described.get("cause"),
                         entered, output)  # fmt: skip

    def run(self, name: str, execution_input: Any, **overrides: str) -> Execution:
        return self.finish(self.start(name, execution_input, **overrides))

    def notifications(self, queue: str, run: str) -> list[dict[str, Any]]:
        """SNS deliveries (Subject, Message) that mention the run, in the order published."""
        sqs = self.clients["sqs"]
        while received := sqs.receive_message(QueueUrl=self.queues[queue], MaxNumberOfMessages=10).get("Messages"):
            for message in received:
                self.received[queue].append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queues[queue], ReceiptHandle=message["ReceiptHandle"])
        # How each message names its run: the state machine's text, or the approval e-mail's JSON.
        names = (f"Retraining run {run} ", f'"run_id": "{run}"')
        return [m for m in self.received[queue] if any(name in m["Message"] for name in names)]

    def champion(self) -> tuple[int | None, bytes | None]:
        """The registry's champion and the serving pointer's bytes: what a failed run must not change."""
        registry = common.runtime().ports.registry
        try:
            pointer = self.clients["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key=POINTER_KEY)["Body"].read()
        except self.clients["s3"].exceptions.NoSuchKey:
            pointer = None
        return registry.champion_version(), pointer

    def versions(self) -> int:
        return len(common.runtime().ports.registry.versions())

    def training_jobs(self) -> list[str]:
        return [
            job["TrainingJobName"] for job in self.clients["sagemaker"].list_training_jobs()["TrainingJobSummaries"]
        ]


def cold_start() -> None:
    common.runtime.cache_clear()
    signing_secret.cache_clear()
    importlib.import_module("lambdas.approval_request.handler")._wiring.cache_clear()
    importlib.import_module("lambdas.approval_decision.routes")._wiring.cache_clear()


def _role(iam: Any, name: str, service: str) -> str:
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service},
                                                     "Action": "sts:AssumeRole"}]}  # fmt: skip
    return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])


def _subscribed_queue(sns: Any, sqs: Any, topic_arn: str, name: str) -> str:
    url = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "false"})
    return url


def _build(home: Path) -> World:
    c = {name: boto3.client(name, region_name=REGION) for name in
         ("s3", "sns", "sqs", "iam", "lambda", "stepfunctions", "sagemaker", "secretsmanager", "kms")}  # fmt: skip
    for bucket in (DATA_BUCKET, ARTIFACTS_BUCKET, SOURCE_BUCKET):
        c["s3"].create_bucket(Bucket=bucket)
    cohort = generate_cohort(3000, seed=7).to_csv(index=False, na_rep="?").encode()
    c["s3"].put_object(Bucket=DATA_BUCKET, Key="cohorts/current.csv", Body=cohort)
    c["s3"].put_object(Bucket=SOURCE_BUCKET, Key="0123abcd.tar.gz", Body=b"source tarball (not run by the stand-in)")
    lambda_role = _role(c["iam"], "clinrisk-lambda", "lambda.amazonaws.com")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("lambdas/placeholder.py", "# moto stores the code; LambdaRuntime runs the repository's")
    arns = {
        name: c["lambda"].create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=lambda_role,
            Handler=f"lambdas.{package}.handler.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
        for name, package in FUNCTIONS.items()
    }
    alerts = c["sns"].create_topic(Name="clinrisk-alerts")["TopicArn"]
    approvals = c["sns"].create_topic(Name="clinrisk-approvals")["TopicArn"]
    queues = {"alerts": _subscribed_queue(c["sns"], c["sqs"], alerts, "on-call"),
              "approvals": _subscribed_queue(c["sns"], c["sqs"], approvals, "approvers")}  # fmt: skip
    secret = c["secretsmanager"].create_secret(Name="clinrisk-approval-key", SecretString="k" * 64)["ARN"]
    substitutions = {
        "AlertsTopicArn": alerts,
        "ApprovalRequestFunctionArn": arns["clinrisk-approval-request"],
        "ApprovalRequired": "false",
        "ApprovalTimeoutSeconds": "3600",
        "ArtifactsBucket": ARTIFACTS_BUCKET,
        "EvaluateFunctionArn": arns["clinrisk-evaluate"],
        "KmsKeyId": c["kms"].create_key(Description="clinrisk")["KeyMetadata"]["Arn"],
        "ManagedSpotTraining": "false",
        "PromoteFunctionArn": arns["clinrisk-promote"],
        "TrainingDataUri": f"s3://{DATA_BUCKET}/cohorts/current.csv",
        "TrainingImageUri": f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:1.7-1",
        "TrainingInstanceType": "ml.m5.xlarge",
        "TrainingMaxRuntimeSeconds": "3600",
        "TrainingMaxWaitSeconds": "7200",
        "TrainingPollSeconds": "0",
        "TrainingRoleArn": _role(c["iam"], "clinrisk-training", "sagemaker.amazonaws.com"),
        **training_source_substitutions(SOURCE_BUCKET, "0123abcd.tar.gz"),
        "ValidateFunctionArn": arns["clinrisk-validate"],
    }
    clients = {"sfn": c["stepfunctions"], "s3": c["s3"], "sqs": c["sqs"], "sagemaker": c["sagemaker"],
               "machine_role": _role(c["iam"], "clinrisk-state-machine", "states.amazonaws.com"),
               "approvals_topic": approvals, "secret_arn": secret}  # fmt: skip
    return World(home, clients, substitutions, queues, TrainingService(c["s3"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The resources, and a first run that makes a champion (checked by the happy-path test)."""
    with mock_aws(config=MOTO_CONFIG):
        built = _build(tmp_path_factory.mktemp("interpreter-home"))
        with pytest.MonkeyPatch.context() as patch:
            built.enter(patch)
            built.champion_run = built.run("first-run", {"trigger": "schedule"})
            cold_start()
        yield built


@pytest.fixture
def cloud(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    world.enter(monkeypatch)
    yield world
    cold_start()


def _message(notification: dict[str, Any]) -> str:
    return str(notification["Message"])


# --------------------------------------------------------------------------- happy path


def test_a_run_trains_evaluates_promotes_and_notifies(cloud: World) -> None:
    run = cloud.champion_run
    assert run is not None

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states == [
        "PrepareRun", "ValidateData", "TrainingCapacity", "OnDemandCapacity", "Train",
        "WaitForTraining", "CheckTraining", "TrainingStatus",  # the job is InProgress: poll again
        "WaitForTraining", "CheckTraining", "TrainingStatus",  # Completed
        "Evaluate", "Gate", "ApprovalRequired", "Promote", "Notify",
    ]  # fmt: skip
    assert run.output is not None
    assert run.output["promoted"] == {"outcome": "promoted", "champion": 1, "detail": "version 1 is the champion"}
    assert run.output["trained"]["model_artifacts"] == (
        f"s3://{ARTIFACTS_BUCKET}/runs/first-run/training/clinrisk-first-run/output/model.tar.gz"
    )
    champion, pointer = cloud.champion()
    assert champion == 1 and pointer is not None
    assert json.loads(pointer)["artifact_prefix"] == "runs/first-run/model"
    [note] = cloud.notifications("alerts", "first-run")
    assert note["Subject"] == "clinrisk: readmission model version 1 outcome promoted"
    assert "Champion now: version 1" in _message(note) and "test_roc_auc" in _message(note)
    assert cloud.notifications("approvals", "first-run") == []


def test_the_training_job_gets_the_runs_channels_locked_down(cloud: World) -> None:
    request = cloud.training.requests["clinrisk-first-run"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {
        "train": f"s3://{ARTIFACTS_BUCKET}/runs/first-run/channels/train/",
        "validation": f"s3://{ARTIFACTS_BUCKET}/runs/first-run/channels/validation/",
        "task": f"s3://{ARTIFACTS_BUCKET}/runs/first-run/channels/task/",
        "code": cloud.substitutions["TrainingSourceUri"],
    }
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {
        "clinrisk:run-id": "first-run",
        "clinrisk:trigger": "schedule",
        "clinrisk:task": "readmission",  # an input naming no task is readmission's
    }
    job = cloud.clients["sagemaker"].describe_training_job(TrainingJobName="clinrisk-first-run")
    assert job["EnableNetworkIsolation"] is True
    assert job["OutputDataConfig"]["KmsKeyId"] == cloud.substitutions["KmsKeyId"]


# --------------------------------------------------------------------------- the answer is no


def test_the_gate_rejecting_a_model_notifies_and_keeps_the_champion(
    cloud: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINRISK_GATE__AUC_FLOOR", "1.0")  # no model reaches a test AUC of 1.0
    cold_start()
    before, versions = cloud.champion(), cloud.versions()

    run = cloud.run("gate-rejects", {"trigger": "drift-alarm"})

    assert run.status == "SUCCEEDED", (run.error, run.cause)  # the pipeline worked; the answer was no
    assert run.states[-3:] == ["Evaluate", "Gate", "NotifyRejected"]
    assert "Promote" not in run.states
    assert cloud.champion() == before
    assert cloud.versions() == versions + 1  # the rejected version stays registered
    [note] = cloud.notifications("alerts", "gate-rejects")
    assert note["Subject"] == f"clinrisk: model version {versions + 1} rejected by the gate"
    assert "is below the floor 1.000" in _message(note)  # the gate's reason, as the e-mail says it
    assert f"the champion (version {before[0]}) keeps serving" in _message(note)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("name", "execution_input", "problem"),
    [
        ("unknown-trigger", {"trigger": "whenever"}, "request.trigger"),
        ("misspelt-option", {"trigger": "manual", "approval_required": True}, "request.approval_required"),
        ("foreign-bucket", {"trigger": "manual", "data_uri": "s3://someone-elses-bucket/cohort.csv"}, "data bucket"),
        ("not-an-object", ["not", "an", "object"], "request"),
    ],
)
def test_bad_execution_input_fails_fast_with_a_notification(
    cloud: World, name: str, execution_input: Any, problem: str
) -> None:
    before, versions = cloud.champion(), cloud.versions()

    run = cloud.run(name, execution_input)

    assert run.status == "FAILED" and run.error == "RetrainingFailed"
    assert run.states == ["PrepareRun", "ValidateData", "NotifyFailed", "Failed"]
    assert f"clinrisk-{name}" not in cloud.training_jobs()  # nothing was trained
    assert (cloud.champion(), cloud.versions()) == (before, versions)
    [note] = cloud.notifications("alerts", name)
    assert note["Subject"] == "clinrisk: retraining run failed"
    assert "BadEventError" in _message(note) and problem in _message(note)
    assert "BadEventError" in (run.cause or "")


def test_missing_data_fails_before_training_with_a_notification(cloud: World) -> None:
    before, versions = cloud.champion(), cloud.versions()

    run = cloud.run("missing-data", {"trigger": "manual", "data_uri": f"s3://{DATA_BUCKET}/cohorts/nothing-here.csv"})

    assert run.status == "FAILED" and run.states[-2:] == ["NotifyFailed", "Failed"]
    assert "Train" not in run.states and "clinrisk-missing-data" not in cloud.training_jobs()
    assert (cloud.champion(), cloud.versions()) == (before, versions)
    [note] = cloud.notifications("alerts", "missing-data")
    assert "DataNotFoundError" in _message(note) and "cohorts/nothing-here.csv" in _message(note)


def test_a_failed_training_job_notifies_and_registers_nothing(cloud: World) -> None:
    cloud.training.fail_next = "AlgorithmError: ExecuteUserScriptError: training failed: SENTINEL-9f3c"
    before, versions = cloud.champion(), cloud.versions()

    run = cloud.run("training-fails", {"trigger": "schedule"})

    assert run.status == "FAILED" and run.error == "RetrainingFailed"
    assert run.states[-4:] == ["TrainingStatus", "TrainingFailed", "NotifyFailed", "Failed"]
    assert "Evaluate" not in run.states
    assert (cloud.champion(), cloud.versions()) == (before, versions)
    [note] = cloud.notifications("alerts", "training-fails")
    assert note["Subject"] == "clinrisk: retraining run failed"
    assert "TrainingJobFailed" in _message(note)
    assert "SageMaker training job clinrisk-training-fails ended Failed (Failed)" in _message(note)
    assert "SENTINEL-9f3c" not in _message(note)  # the container's output stays out of the e-mail
    assert "TrainingJobFailed" in (run.cause or "")


# --------------------------------------------------------------------------- approval


def _wait_for_approval_email(cloud: World, run: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while not (emails := cloud.notifications("approvals", run)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no approval e-mail for {run}")
        time.sleep(0.1)
    [email] = emails
    message: dict[str, Any] = json.loads(email["Message"])
    return message


def _click(url: str, method: str) -> dict[str, Any]:
    """The approver's browser through API Gateway to the decision Lambda."""
    parts = urlsplit(url)
    request = HttpRequest(method=method, path=parts.path, query_string=parts.query.encode(),
                          headers=[("host", parts.netloc)], body=b"", source_ip="198.51.100.7",
                          protocol="HTTP/1.1")  # fmt: skip
    event = proxy_event(request, claims=None, request_id="req-approval", received_at=time.time())
    handler = importlib.import_module("lambdas.approval_decision.handler").handler
    context = LocalLambdaContext(aws_request_id="req-approval", deadline_epoch=time.time() + 30,
                                 function_name="clinrisk-approval-decision")  # fmt: skip
    response: dict[str, Any] = handler(event, context)
    return response


def test_an_approved_model_is_promoted(cloud: World) -> None:
    (champion, _), versions = cloud.champion(), cloud.versions()
    # The execution input asks for approval, although this deployment does not require it.
    arn = cloud.start("approved", {"trigger": "manual", "approval_requested": True})
    email = _wait_for_approval_email(cloud, "approved")
    assert (email["model_version"], email["champion_before"]) == (versions + 1, champion)

    assert _click(email["approve"], "GET")["statusCode"] == 200  # the confirmation page decides nothing
    assert _click(email["approve"], "POST")["statusCode"] == 200
    run = cloud.finish(arn)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[-3:] == ["RequestApproval", "Promote", "Notify"]
    assert run.output is not None and run.output["approval"]["decision"] == "approve"
    assert cloud.champion()[0] == versions + 1
    [note] = cloud.notifications("alerts", "approved")
    assert note["Subject"] == f"clinrisk: readmission model version {versions + 1} outcome promoted"
    # The task is answered: a second click changes nothing. (A second click on *reject* is
    # checked with Stubber in tests/unit/test_approval_handlers.py: moto's SendTaskFailure, unlike
    # its SendTaskSuccess, also accepts the token of an execution that has ended.)
    assert _click(email["approve"], "POST")["statusCode"] == 410


def test_a_rejected_model_is_not_promoted(cloud: World) -> None:
    before = cloud.champion()
    arn = cloud.start("rejected", {"trigger": "manual"}, ApprovalRequired="true")
    email = _wait_for_approval_email(cloud, "rejected")

    assert _click(email["reject"], "POST")["statusCode"] == 200
    run = cloud.finish(arn)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[-2:] == ["RequestApproval", "NotifyNotApproved"]
    assert cloud.champion() == before
    [note] = cloud.notifications("alerts", "rejected")
    assert note["Subject"] == f"clinrisk: model version {email['model_version']} not approved"
    assert "ApprovalRejected" in _message(note)
    assert _click(email["approve"], "POST")["statusCode"] == 410


def test_no_decision_in_time_is_not_approved(cloud: World) -> None:
    before = cloud.champion()
    # The deployment requires approval (the input does not ask for it, and cannot waive it).
    run = cloud.run("timed-out", {"trigger": "schedule"}, ApprovalRequired="true", ApprovalTimeoutSeconds="1")

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[-2:] == ["RequestApproval", "NotifyNotApproved"]
    assert cloud.champion() == before
    [note] = cloud.notifications("alerts", "timed-out")
    assert "not approved" in note["Subject"] and "States.Timeout" in _message(note)
    assert len(cloud.notifications("approvals", "timed-out")) == 1  # the approvers were asked


# --------------------------------------------------------------------------- tasks


def _task_registry(task: str) -> Registry:
    registry = common.runtime().ports.registry
    return registry.for_task(task, task_model_name(task, registry.model_name))


def _sagemaker_serving(world: World, patch: pytest.MonkeyPatch, endpoints: dict[str, str]) -> None:
    """The `sagemaker` serving mode's settings, as the Pipeline stack gives the promote function
    (cdk_app/constructs/sagemaker_endpoint.py): one endpoint per task."""
    for name, value in {
        "ENDPOINT_NAME": endpoints["readmission"],
        "ENDPOINT_NAMES": json.dumps(endpoints),
        "EXECUTION_ROLE_ARN": world.substitutions["TrainingRoleArn"],
        "IMAGE_URI": f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.0-5",
        "SOURCE_URI": world.substitutions["TrainingSourceUri"],
        "KMS_KEY_ARN": world.substitutions["KmsKeyId"],
    }.items():
        patch.setenv(f"CLINRISK_SAGEMAKER__{name}", value)
    cold_start()


def test_a_task_named_in_the_input_trains_evaluates_and_promotes_its_own_model(
    cloud: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a task's schedule or drift rule starts (cdk_app/constructs/retraining_triggers.py), all
    the way: the validate stage reads the task's own file (a synthetic heart-disease site file, named
    as the task file's `file_label` knows it) and writes the task file beside the channels; the
    training job gets it as its `task` channel and trains the task's model (real training code in the
    stand-in); evaluation registers it in the task's own registered model, and promotion makes it that
    model's champion, with its own serving pointer, deployed to the task's own endpoint (the
    `sagemaker` serving mode, in moto's SageMaker). Readmission's registry, pointer and endpoint are
    untouched."""
    task = "heart-disease"
    endpoints = {"readmission": "clinrisk-test-predict", task: "clinrisk-test-heart-disease"}
    _sagemaker_serving(cloud, monkeypatch, endpoints)
    site_file = write_site_file(tmp_path / "processed.cleveland.data", heart_frame(rows=600, seed=11))
    key = f"cohorts/heart/{site_file.name}"
    cloud.clients["s3"].put_object(Bucket=DATA_BUCKET, Key=key, Body=site_file.read_bytes())
    readmission_before, readmission_versions = cloud.champion(), cloud.versions()
    earlier = len(cloud.runtime.invocations)

    run = cloud.run("named-task", {"trigger": "schedule", "task": task, "data_uri": f"s3://{DATA_BUCKET}/{key}"})

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states[-5:] == ["Evaluate", "Gate", "ApprovalRequired", "Promote", "Notify"]
    payloads = dict(cloud.runtime.invocations[earlier:])
    assert payloads["clinrisk-validate"]["request"]["task"] == task
    request = cloud.training.requests["clinrisk-named-task"]
    assert {t["Key"]: t["Value"] for t in request["Tags"]}["clinrisk:task"] == task
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels["task"] == f"s3://{ARTIFACTS_BUCKET}/runs/named-task/channels/task/"
    shipped = (Path(__file__).resolve().parents[2] / "tasks" / f"{task}.yaml").read_bytes()
    task_file = f"runs/named-task/channels/task/{task}.yaml"  # the file the validate stage checked the data against
    assert cloud.clients["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key=task_file)["Body"].read() == shipped

    registry = _task_registry(task)
    assert registry.model_name == "clinrisk-heart-disease" and registry.champion_version() == 1
    assert run.output is not None and run.output["promoted"]["outcome"] == "promoted"
    assert run.output["evaluated"]["model_version"] == 1
    pointer = cloud.clients["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key=pointer_key(task))["Body"].read()
    assert json.loads(pointer)["artifact_prefix"] == "runs/named-task/model"
    schema = cloud.clients["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key="runs/named-task/model/feature_schema.json")
    assert '"oldpeak"' in (text := schema["Body"].read().decode()) and "num_lab_procedures" not in text  # heart's
    summary = cloud.clients["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key="runs/named-task/model/training_summary.json")
    trained = json.loads(summary["Body"].read())["hyperparameters"]  # the task file's overrides, as locally
    assert (trained["max_depth"], trained["min_child_weight"]) == (2, 3.0)
    assert (cloud.champion(), cloud.versions()) == (readmission_before, readmission_versions)
    [note] = cloud.notifications("alerts", "named-task")
    assert note["Subject"] == f"clinrisk: {task} model version 1 outcome promoted"
    sagemaker = cloud.clients["sagemaker"]
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == [endpoints[task]]
    deployed = sagemaker.describe_endpoint(EndpointName=endpoints[task])["EndpointConfigName"]
    assert deployed == f"{endpoints[task]}-v1-{json.loads(pointer)['checksum'][:8]}"


# --------------------------------------------------------------------------- the drift alarm starts a run


def _retraining_triggers_template() -> dict[str, Any]:
    """The CloudFormation of the real `RetrainingTriggers` construct, as the Pipeline stack builds it."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_sns as sns_
    from aws_cdk import aws_stepfunctions as sfn_
    from aws_cdk.assertions import Template

    from cdk_app.constructs.retraining_triggers import RetrainingTriggers

    stack = Stack(App(), "Triggers")
    machine = sfn_.StateMachine.from_state_machine_arn(
        stack, "Machine", f"arn:aws:states:{REGION}:123456789012:stateMachine:clinrisk-retraining"
    )
    alerts = sns_.Topic.from_topic_arn(stack, "Alerts", f"arn:aws:sns:{REGION}:123456789012:clinrisk-alerts")
    schedules = {"readmission": "rate(7 days)"}
    RetrainingTriggers(stack, "Triggers", state_machine=machine, schedules=schedules, alerts=alerts, env_name="dev")
    return dict(Template.from_stack(stack).to_json())


@dataclass(frozen=True)
class DriftRule:
    """The drift rule as synthesized: its event pattern (the alarm's ARN resolved) and its target's input."""

    pattern: dict[str, Any]
    execution_input: dict[str, Any]
    alarm_arn: str

    @classmethod
    def from_template(cls, template: dict[str, Any], *, account: str) -> DriftRule:
        resources = template["Resources"]
        [(alarm_id, alarm)] = [(lid, r) for lid, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
        alarm_arn = f"arn:aws:cloudwatch:{REGION}:{account}:alarm:{alarm['Properties']['AlarmName']}"
        [rule] = [r["Properties"] for r in resources.values()
                  if r["Type"] == "AWS::Events::Rule" and "EventPattern" in r["Properties"]]  # fmt: skip
        pattern = json.loads(json.dumps(rule["EventPattern"]))
        assert pattern["resources"] == [{"Fn::GetAtt": [alarm_id, "Arn"]}]
        pattern["resources"] = [alarm_arn]
        [target] = rule["Targets"]
        return cls(pattern=pattern, execution_input=json.loads(target["Input"]), alarm_arn=alarm_arn)


def _alarm_event(rule: DriftRule, *, state: str, previous: str) -> dict[str, Any]:
    """PutEvents' entry for CloudWatch's state-change event (tests/aws_events.py has the event itself)."""
    from tests.aws_events import alarm_state_change

    event = alarm_state_change(
        rule.alarm_arn.rsplit(":", 1)[-1], state=state, previous=previous, alarm_arn=rule.alarm_arn
    )
    return {"Source": event["source"], "DetailType": event["detail-type"], "Resources": event["resources"],
            "Detail": json.dumps(event["detail"])}  # fmt: skip


def test_the_drift_alarm_entering_alarm_starts_one_run_and_nothing_else_does(cloud: World) -> None:
    """CloudWatch's state-change events for the FeatureDrift alarm go through moto's EventBridge, on the
    synthesized rule's pattern, to a queue that stands for the rule's target; each delivered event
    starts what that target starts: the retraining state machine, with the target's own input, run by
    moto's interpreter with the real handlers."""
    events, sqs = boto3.client("events", region_name=REGION), cloud.clients["sqs"]
    account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
    rule = DriftRule.from_template(_retraining_triggers_template(), account=account)
    delivered = sqs.create_queue(QueueName="drift-rule-target")["QueueUrl"]
    target = sqs.get_queue_attributes(QueueUrl=delivered, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="clinrisk-drift", EventPattern=json.dumps(rule.pattern))
    events.put_targets(Rule="clinrisk-drift", Targets=[{"Id": "retraining", "Arn": target}])
    trained_before = len(cloud.training_jobs())
    runs: dict[str, Execution] = {}
    for previous, state in (("OK", "ALARM"), ("ALARM", "ALARM"), ("ALARM", "OK"), ("INSUFFICIENT_DATA", "ALARM")):
        events.put_events(Entries=[_alarm_event(rule, state=state, previous=previous)])
        messages = sqs.receive_message(QueueUrl=delivered, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=delivered, ReceiptHandle=message["ReceiptHandle"])
            # EventBridge names the execution with a generated id, as here.
            runs[f"{previous}->{state}"] = cloud.run(str(uuid.uuid4()), rule.execution_input)
    assert rule.execution_input == {"trigger": "drift-alarm", "task": "readmission"}
    assert sorted(runs) == ["INSUFFICIENT_DATA->ALARM", "OK->ALARM"]
    for run in runs.values():
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        assert run.states[:2] == ["PrepareRun", "ValidateData"] and "Train" in run.states
    assert len(cloud.training_jobs()) == trained_before + 2  # one training per transition into ALARM
