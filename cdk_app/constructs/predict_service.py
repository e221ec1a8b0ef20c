"""The predict Lambda and its `live` alias, which API Gateway invokes and CodeDeploy shifts.

The function scores in-process: it reads the serving pointer from the artifacts bucket and
downloads the model directories the pointer names. It may read exactly those objects, nothing
else in the bucket. Each deploy that changes the code or configuration publishes a new version;
the alias moves to it through a CodeDeploy canary (`CanaryDeployment`), so the API always calls
the alias, never `$LATEST`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.network import PrivateNetwork
from cdk_app.constructs.prediction_capture import PredictionCapture
from cdk_app.constructs.python_function import NETWORK_INTERFACE_REASON, PythonFunction
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources
from cdk_app.environment import backend_environment
from cdk_app.permissions import allow_read_objects
from clinrisk.registry.serving_pointer import POINTER_KEY

# What serving reads (clinrisk.serving.model_holder): the pointer, and the model directories under
# runs/<run_id>/model/ that it names (the champion's, and a challenger's in canary or shadow mode).
MODEL_DIRECTORIES = "runs/*/model/"
SERVING_PREFIXES = (POINTER_KEY, MODEL_DIRECTORIES)
ALIAS_NAME = "live"
METRICS_NAMESPACE = "clinrisk"
# API Gateway gives up after 29 s; a request of 1,000 encounters with factors takes well under that.
TIMEOUT = Duration.seconds(29)
MEMORY_MB = 1024
RESERVED_CONCURRENCY = 20


class PredictService(Construct):
    """`function` is the hardened predict function; `alias` is what the API integrates with."""

    function: lambda_.Function
    alias: lambda_.Alias

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        artifacts_bucket: s3.IBucket,
        data_key: kms.IKey,
        log_key: kms.IKey,
        sagemaker_environment: Mapping[str, str] | None = None,
        network: PrivateNetwork | None = None,
        capture: PredictionCapture | None = None,
    ) -> None:
        super().__init__(scope, id)
        environment = {
            **backend_environment(artifacts_bucket=artifacts_bucket.bucket_name),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        if sagemaker_environment is not None:
            # The `sagemaker` serving mode: scoring goes to each task's endpoint (clinrisk.settings.SageMakerServing).
            environment |= sagemaker_environment
        if capture is not None:
            environment |= capture.environment
        wrapped = PythonFunction(
            self,
            "Predict",
            bundle="predict",
            handler="lambdas.predict.handler.handler",
            description="clinrisk prediction API: scores encounters with the champion model",
            data_key=data_key,
            log_key=log_key,
            environment=environment,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            reserved_concurrency=RESERVED_CONCURRENCY,
            network=network,
        )
        self.function = wrapped.function
        allow_read_objects(self.function, artifacts_bucket, key=data_key, prefixes=SERVING_PREFIXES)
        if capture is not None:
            capture.allow_capture(self.function)
        self._acknowledge(wrapped, in_vpc=network is not None)
        self.alias = lambda_.Alias(self, "Live", alias_name=ALIAS_NAME, version=self.function.current_version)

    @staticmethod
    def _acknowledge(wrapped: PythonFunction, *, in_vpc: bool) -> None:
        acknowledge_wildcard_resources(
            wrapped.role,
            "Serving GETs the serving pointer and the model directories runs/<run_id>/model/ it names; run ids"
            " are only known at run time, so object ARNs end in a prefix wildcard. X-Ray's PutTraceSegments and"
            " PutTelemetryRecords have no resource-level permissions, so tracing needs Resource '*'."
            + (" " + NETWORK_INTERFACE_REASON if in_vpc else ""),
        )
        acknowledge(
            wrapped.role,
            "HIPAA.Security-IAMNoInlinePolicy",
            "The policy belongs to this one function's role and is created, changed and deleted with it by"
            " CloudFormation; a managed policy would be a second resource with the same lifetime and no reuse.",
        )
        acknowledge(
            wrapped.function,
            "Serverless-LambdaLatestVersion",
            "The bundle's compiled wheels (numpy, pydantic-core) are built for CPython 3.12, which Lambda"
            " supports on Amazon Linux 2023; moving runtime is a deliberate change of lock files and smoke tests.",
        )
