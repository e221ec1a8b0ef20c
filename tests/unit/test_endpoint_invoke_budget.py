"""The `sagemaker` serving mode's runtime client gives up inside the predict function's budget.

The predict function answers through API Gateway, which cuts every integration off at 29 s. The
client's connect and read timeouts, its attempts and the backoff between them bound how long one
InvokeEndpoint can take (`worst_case_invoke_seconds`); the deployed settings are checked against the
deployed function timeout in tests/infrastructure/test_first_deploy.py. Here: the bound itself, and a
real client against a local server that never answers, which must be asked exactly `invoke_max_attempts`
times and then give a 503-type error (no timing is asserted).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import boto3  # type: ignore[import-untyped]
import pytest

from cdk_app.constructs.predict_service import TIMEOUT as PREDICT_TIMEOUT
from clinrisk.adapters.sagemaker_endpoint import (
    SageMakerEndpointInvoker,
    invoke_client_config,
    worst_case_invoke_seconds,
)
from clinrisk.ports import EndpointUnavailableError
from clinrisk.settings import SageMakerServing

API_GATEWAY_LIMIT_SECONDS = 29


def test_the_default_settings_fit_inside_the_predict_function() -> None:
    settings = SageMakerServing(endpoint_name="clinrisk-dev-predict-0123abcd")
    # 2 attempts of (2 s connect + 8 s read), one backoff of at most 1 s, plus up to 5 s more when
    # the service asks for it with x-amz-retry-after.
    assert worst_case_invoke_seconds(settings) == 26.0
    assert worst_case_invoke_seconds(settings) < PREDICT_TIMEOUT.to_seconds() <= API_GATEWAY_LIMIT_SECONDS


def test_the_old_client_settings_would_not_fit() -> None:
    # What the runtime client used before (clinrisk.adapters.aws._client): 60 s reads, 5 attempts.
    old = SageMakerServing(
        endpoint_name="e", invoke_connect_timeout_seconds=5, invoke_read_timeout_seconds=60, invoke_max_attempts=5
    )
    assert worst_case_invoke_seconds(old) > API_GATEWAY_LIMIT_SECONDS


def test_the_invoker_is_built_with_the_settings() -> None:
    settings = SageMakerServing(endpoint_name="e", invoke_read_timeout_seconds=7, invoke_max_attempts=3)
    invoker = SageMakerEndpointInvoker.from_settings(settings, region="us-east-1")
    config = invoker._client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 7)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[int]]]:
    """An HTTP endpoint that accepts connections and never answers; counts the connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[int] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            accepted.append(1)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for connection in held:
        connection.close()


def test_an_endpoint_that_never_answers_is_asked_max_attempts_times_then_unavailable(
    silent_server: tuple[str, list[int]],
) -> None:
    url, accepted = silent_server
    settings = SageMakerServing(
        endpoint_name="e", invoke_connect_timeout_seconds=1, invoke_read_timeout_seconds=0.3, invoke_max_attempts=2
    )
    client = boto3.client(
        "sagemaker-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=invoke_client_config(settings),
    )
    with pytest.raises(EndpointUnavailableError, match="not reachable: ReadTimeoutError"):
        SageMakerEndpointInvoker("e", client=client).invoke(b"{}")
    assert len(accepted) == settings.invoke_max_attempts
