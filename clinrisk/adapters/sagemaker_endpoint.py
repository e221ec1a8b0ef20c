"""The SageMaker serverless endpoint of the `sagemaker` serving mode: deploy a version to it, call it.

Deploying a version creates a SageMaker model and an endpoint configuration named after the
version (`<endpoint>-v<version>-<checksum>`), then creates the endpoint or updates it to that
configuration. SageMaker keeps the old configuration serving until the new one is in service,
and rolls back by itself when it cannot start. Every step tolerates having been done already,
so a retried promotion (or a rollback to an earlier version) goes through.

The model runs `inference.py` from the training source tarball (the XGBoost image's script mode:
SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY), with the version's archive as model data.
Errors become the ports' errors, named by AWS error code, never with request content.
"""

from __future__ import annotations

from typing import Any

from clinrisk.adapters import boto
from clinrisk.errors import ConfigurationError
from clinrisk.ports import EndpointBusyError, EndpointFailedError, EndpointUnavailableError
from clinrisk.serving.endpoint_archive import CONTENT_TYPE
from clinrisk.settings import SageMakerServing

VARIANT_NAME = "AllTraffic"
INFERENCE_PROGRAM = "inference.py"
# The endpoint takes new deployments only in these states; other states are transitions.
DEPLOYABLE_STATES = frozenset({"InService", "Failed"})
# InvokeEndpoint errors worth a retry by the API's caller (503), as opposed to the model failing (502).
TRANSIENT_INVOKE_ERRORS = frozenset({"ThrottlingException", "ServiceUnavailable", "InternalFailure"})


def _already_exists(error: Exception) -> bool:
    return boto.error_code(error) == "ValidationException" and "already exist" in str(error).lower()


def _not_found(error: Exception) -> bool:
    return boto.error_code(error) == "ValidationException" and "could not find" in str(error).lower()


class SageMakerEndpointDeployer:
    """Deploys to `endpoint_name`: a task's own endpoint (`SageMakerServing.endpoint_for`), by
    default the deployment's (`settings.endpoint_name`)."""

    def __init__(
        self,
        settings: SageMakerServing,
        *,
        region: str | None = None,
        client: Any = None,
        endpoint_name: str | None = None,
    ) -> None:
        missing = settings.missing_for_deployment()
        if missing:
            fields = ", ".join(f"CLINRISK_SAGEMAKER__{name.upper()}" for name in missing)
            raise ConfigurationError(f"deploying to the SageMaker endpoint needs {fields}")
        self._settings = settings
        self.endpoint_name = endpoint_name or settings.endpoint_name
        self._client = client or boto.client("sagemaker", region)
        # The endpoint's region is the client's: the model container reads its source from there.
        self._region: str = self._client.meta.region_name

    def deploy(self, *, model_data_url: str, deployment_name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            self._create_model(deployment_name, model_data_url)
            self._create_config(deployment_name)
            self._point_endpoint_at(deployment_name)
        except (ClientError, BotoCoreError) as error:
            code = boto.error_code(error)
            raise EndpointUnavailableError(
                f"deploying {deployment_name} to endpoint {self.endpoint_name} failed: {code}"
            ) from None

    def _create_model(self, name: str, model_data_url: str) -> None:
        settings = self._settings
        container = {
            "Image": settings.image_uri,
            "ModelDataUrl": model_data_url,
            "Environment": {
                "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
                "SAGEMAKER_SUBMIT_DIRECTORY": settings.source_uri,
                "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                # The image's toolkit downloads SAGEMAKER_SUBMIT_DIRECTORY from S3 in this region.
                "SAGEMAKER_REGION": self._region,
            },
        }
        self._create_once(
            self._client.create_model,
            ModelName=name,
            ExecutionRoleArn=settings.execution_role_arn,
            PrimaryContainer=container,
        )

    def _create_config(self, name: str) -> None:
        settings = self._settings
        variant = {
            "VariantName": VARIANT_NAME,
            "ModelName": name,
            "ServerlessConfig": {"MemorySizeInMB": settings.memory_mb, "MaxConcurrency": settings.max_concurrency},
        }
        extra = {"KmsKeyId": settings.kms_key_arn} if settings.kms_key_arn else {}
        self._create_once(
            self._client.create_endpoint_config, EndpointConfigName=name, ProductionVariants=[variant], **extra
        )

    @staticmethod
    def _create_once(create: Any, **parameters: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            create(**parameters)
        except ClientError as error:
            if not _already_exists(error):
                raise

    def _point_endpoint_at(self, config_name: str) -> None:
        from botocore.exceptions import ClientError

        endpoint = self.endpoint_name
        try:
            described = self._client.describe_endpoint(EndpointName=endpoint)
        except ClientError as error:
            if not _not_found(error):
                raise
            self._client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
            return
        status = described["EndpointStatus"]
        if status not in DEPLOYABLE_STATES:
            raise EndpointBusyError(f"endpoint {endpoint} is {status}; deploy {config_name} once it settles")
        if described.get("EndpointConfigName") != config_name or status == "Failed":
            self._client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)


def invoke_client_config(settings: SageMakerServing) -> Any:
    """The sagemaker-runtime client's botocore Config: short timeouts and few attempts, so that the
    predict function answers 503 inside API Gateway's 29 s instead of being cut off with a 504."""
    from botocore.config import Config  # type: ignore[import-untyped]

    return Config(
        connect_timeout=settings.invoke_connect_timeout_seconds,
        read_timeout=settings.invoke_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.invoke_max_attempts},
    )


def worst_case_invoke_seconds(settings: SageMakerServing) -> float:
    """The longest one InvokeEndpoint call can take with `invoke_client_config`: every attempt
    waits out its connect and read timeouts, and every retry its longest backoff. botocore's
    standard mode waits at most min(2 ** (attempt - 1), 20) s, plus up to 5 s more when the
    service sends x-amz-retry-after; the bounds are read from the installed botocore."""
    from botocore.retries.standard import ExponentialBackoff  # type: ignore[import-untyped]

    attempts = settings.invoke_max_attempts
    per_attempt = settings.invoke_connect_timeout_seconds + settings.invoke_read_timeout_seconds
    retry_after_extra = float(getattr(ExponentialBackoff, "_RETRY_AFTER_MAX_ADDITIONAL", 0))
    backoffs = sum(
        min(ExponentialBackoff._BASE ** (attempt - 1), ExponentialBackoff._MAX_BACKOFF) + retry_after_extra
        for attempt in range(1, attempts)
    )
    return attempts * per_attempt + backoffs


class SageMakerEndpointInvoker:
    def __init__(self, endpoint_name: str, *, region: str | None = None, client: Any = None) -> None:
        self._endpoint = endpoint_name
        self._client = client or boto.client("sagemaker-runtime", region)

    @classmethod
    def from_settings(
        cls, settings: SageMakerServing, *, region: str | None = None, endpoint_name: str | None = None
    ) -> SageMakerEndpointInvoker:
        """The invoker of `endpoint_name` (a task's own endpoint), by default the deployment's."""
        import boto3  # type: ignore[import-untyped]

        client = boto3.client("sagemaker-runtime", region_name=region, config=invoke_client_config(settings))
        return cls(endpoint_name or settings.endpoint_name, client=client)

    def invoke(self, body: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.invoke_endpoint(
                EndpointName=self._endpoint, ContentType=CONTENT_TYPE, Accept=CONTENT_TYPE, Body=body
            )
            return bytes(response["Body"].read())
        except ClientError as error:
            code = boto.error_code(error)
            if code in TRANSIENT_INVOKE_ERRORS or _not_found(error):
                raise EndpointUnavailableError(f"endpoint {self._endpoint} is not available: {code}") from None
            raise EndpointFailedError(f"endpoint {self._endpoint} failed: {code}") from None
        except BotoCoreError as error:
            raise EndpointUnavailableError(
                f"endpoint {self._endpoint} is not reachable: {type(error).__name__}"
            ) from None
