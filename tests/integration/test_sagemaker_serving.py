"""The `sagemaker` serving mode: promotion deploys the champion's archive to the endpoint, and the
predict Lambda scores on it.

Locally the endpoint is `LocalEndpoint`, which runs `sagemaker_jobs/inference.py` on the archive
as the image's model server would. The SageMaker API calls are checked with botocore's Stubber,
which validates every parameter against the service model; the endpoint's answers in those tests
are what the real inference script returns for the request.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.response import StreamingBody  # type: ignore[import-untyped]
from botocore.stub import ANY, Stubber  # type: ignore[import-untyped]

import lambdas.predict.routes as predict_routes
from clinrisk.adapters.local_endpoint import INFERENCE_SCRIPT, LocalEndpoint, _inference_module
from clinrisk.adapters.sagemaker_endpoint import SageMakerEndpointDeployer, SageMakerEndpointInvoker
from clinrisk.errors import ConfigurationError
from clinrisk.pipeline.contracts import Ports
from clinrisk.ports import EndpointBusyError, EndpointFailedError, EndpointUnavailableError
from clinrisk.registry.serving_pointer import ServingPointer, read_pointer
from clinrisk.runtime import build_ports
from clinrisk.serving.endpoint_archive import CONTENT_TYPE, EndpointMetadata, archive_bytes, unpack_archive
from clinrisk.serving.endpoint_contract import (
    EndpointModel,
    EndpointModelError,
    EndpointRequestError,
    load_endpoint_model,
    request_body,
)
from clinrisk.serving.endpoint_deployment import EndpointArchiveError, EndpointPublisher
from clinrisk.serving.prediction import PredictRequest, predict_with_endpoint
from clinrisk.serving.scoring import Bands, ServingModel
from clinrisk.settings import SageMakerServing, Settings
from tests.integration.test_predict_api import _call, _records, _serve

pytestmark = pytest.mark.integration

ENDPOINT = "clinrisk-test-predict"
REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/clinrisk-endpoint"
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
SOURCE = "s3://cdk-assets/training-source.tar.gz"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BANDS = Bands(medium_from=0.1, high_from=0.2)


def _sagemaker_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sagemaker": SageMakerServing(endpoint_name=ENDPOINT)})


@pytest.fixture
def lambda_mode(home_with_champion: Callable[[], Settings]) -> Settings:
    return home_with_champion()


@pytest.fixture
def sagemaker_ports(lambda_mode: Settings) -> Ports:
    return build_ports(_sagemaker_settings(lambda_mode))


def _pointer(ports: Ports) -> ServingPointer:
    pointer = read_pointer(ports.store)
    assert pointer is not None
    return pointer


handler_serving = predict_routes.serving  # the cached function, before any test swaps it


@pytest.fixture
def deployed(lambda_mode: Settings, sagemaker_ports: Ports, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Version 1 promoted again in the sagemaker mode, so it is deployed to the (local) endpoint,
    and the predict handler configured for that mode."""
    sagemaker_ports.registry.promote_manually(1)
    _serve(monkeypatch, lambda_mode)
    monkeypatch.setenv("CLINRISK_SAGEMAKER__ENDPOINT_NAME", ENDPOINT)
    yield lambda_mode
    handler_serving.cache_clear()


# --------------------------------------------------------------------------- end to end, locally


def test_promotion_publishes_a_versioned_archive_the_endpoint_serves(deployed: Settings) -> None:
    pointer = _pointer(build_ports(deployed))
    metadata = EndpointMetadata(model_name=pointer.model_name, version=1, checksum=pointer.checksum)
    archive = deployed.store_root / metadata.archive_key
    assert archive.is_file() and metadata.archive_key.startswith("serving/sagemaker/v1-")
    state = json.loads((deployed.home_dir / "endpoints" / f"{ENDPOINT}.json").read_text())
    assert state["deployment_name"] == f"{ENDPOINT}-v1-{pointer.checksum[:8]}"
    with tarfile.open(archive) as opened:
        names = opened.getnames()
    assert names[0] == "endpoint.json" and "model/model.json" in names


def test_the_endpoint_answers_as_the_lambda_mode_does(deployed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    records = _records(25)
    on_endpoint = _call("/v1/predict", method="POST", body={"encounters": records})
    assert on_endpoint["statusCode"] == 200, on_endpoint["body"]
    monkeypatch.delenv("CLINRISK_SAGEMAKER__ENDPOINT_NAME")
    predict_routes.serving.cache_clear()
    in_lambda = _call("/v1/predict", method="POST", body={"encounters": records})
    assert in_lambda["statusCode"] == 200
    for key in ("predictions", "model_name", "model_version"):
        assert on_endpoint["json"][key] == in_lambda["json"][key]


def test_the_model_route_names_the_champion_without_loading_it(deployed: Settings) -> None:
    body = _call("/v1/model")["json"]
    assert body["version"] == 1 and body["serving_status"] == "current" and body["challenger"] is None
    assert predict_routes.serving().holder is None


def test_nothing_deployed_yet_is_503(lambda_mode: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, lambda_mode)
    monkeypatch.setenv("CLINRISK_SAGEMAKER__ENDPOINT_NAME", ENDPOINT)
    try:
        response = _call("/v1/predict", method="POST", body={"encounters": _records(2)})
    finally:
        predict_routes.serving.cache_clear()
    assert response["statusCode"] == 503
    assert "endpoint" in response["json"]["message"]


def test_a_model_whose_files_changed_is_not_deployed_and_the_champion_stays(
    lambda_mode: Settings, sagemaker_ports: Ports
) -> None:
    before = _pointer(sagemaker_ports)
    booster = lambda_mode.store_root / before.artifact_prefix / "model.json"
    booster.write_text(booster.read_text() + " ")
    with pytest.raises(EndpointArchiveError, match="does not match its checksum"):
        sagemaker_ports.registry.promote_manually(1)
    assert _pointer(sagemaker_ports) == before
    assert sagemaker_ports.registry.champion_version() == 1
    assert not (lambda_mode.home_dir / "endpoints" / f"{ENDPOINT}.json").exists()


def test_a_refused_deployment_leaves_registry_and_pointer_unchanged(
    lambda_mode: Settings, sagemaker_ports: Ports
) -> None:
    """A second version would be the champion, but the endpoint is mid-update: nothing moves."""
    before = _pointer(sagemaker_ports)
    registry = sagemaker_ports.registry
    client, stubber = _stubbed("sagemaker")
    name = f"{ENDPOINT}-v1-{before.checksum[:8]}"
    stubber.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:{REGION}:1:model/{name}"})
    stubber.add_response("create_endpoint_config", {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:1:x/{name}"})
    stubber.add_response("describe_endpoint", _described("Updating", "other-config"))
    deployer = SageMakerEndpointDeployer(_full_settings(), client=client)
    registry.publish = EndpointPublisher(store=sagemaker_ports.store, deployer=deployer, endpoint_name=ENDPOINT)
    history = registry._history()
    with stubber, pytest.raises(EndpointBusyError, match="Updating"):
        registry.promote_manually(1)
    stubber.assert_no_pending_responses()
    assert _pointer(sagemaker_ports) == before
    assert registry.champion_version() == 1 and registry._history() == history


# --------------------------------------------------------------------------- the inference script


@pytest.fixture
def model_dir(lambda_mode: Settings, tmp_path: Path) -> Path:
    pointer = _pointer(build_ports(lambda_mode))
    metadata = EndpointMetadata(model_name=pointer.model_name, version=pointer.version, checksum=pointer.checksum)
    data = archive_bytes(lambda_mode.store_root / pointer.artifact_prefix, metadata)
    assert data == archive_bytes(lambda_mode.store_root / pointer.artifact_prefix, metadata)  # reproducible
    return unpack_archive(data, tmp_path / "opt-ml-model")


def test_inference_script_scores_like_the_serving_model(model_dir: Path, lambda_mode: Settings) -> None:
    inference = _inference_module(INFERENCE_SCRIPT)
    model = inference.model_fn(str(model_dir))
    records = _records(10)
    priors = [int(r.pop("prior_encounters", 0)) for r in records]
    body = request_body(records, priors, bands=BANDS, top_k=3)
    answer, content_type = inference.transform_fn(model, body, "application/json; charset=utf-8", CONTENT_TYPE)
    assert content_type == CONTENT_TYPE
    pointer = _pointer(build_ports(lambda_mode))
    direct = ServingModel.load(
        lambda_mode.store_root / pointer.artifact_prefix, name="m", version=1, checksum=pointer.checksum
    ).score(records, priors, bands=BANDS, top_k=3)
    decoded = json.loads(answer)
    assert decoded["model_version"] == 1 and decoded["checksum"] == pointer.checksum
    assert decoded["scored"] == [s.model_dump(mode="json") for s in direct]


def test_inference_refuses_what_is_not_its_request(model_dir: Path) -> None:
    model = load_endpoint_model(model_dir)
    with pytest.raises(EndpointRequestError, match="text/csv"):
        _transform(model, b"1,2,3", "text/csv")
    with pytest.raises(EndpointRequestError, match="records") as caught:
        _transform(model, json.dumps({"records": [], "prior_encounters": [], "medium_from": 0.1,
                                      "high_from": 0.2, "top_k": 1}).encode())  # fmt: skip
    assert "0.1" not in str(caught.value)
    body = json.loads(request_body([{"race": "Caucasian"}], [0, 1], bands=BANDS, top_k=1))
    with pytest.raises(EndpointRequestError, match="differ in length"):
        _transform(model, json.dumps(body).encode())


def _transform(model: EndpointModel, body: bytes, content_type: str = CONTENT_TYPE) -> bytes:
    return bytes(_inference_module(INFERENCE_SCRIPT).transform_fn(model, body, content_type, CONTENT_TYPE)[0])


def test_a_tampered_archive_does_not_load(model_dir: Path) -> None:
    (model_dir / "model" / "calibrator.json").write_text("{}")
    with pytest.raises(EndpointModelError, match="checksum"):
        load_endpoint_model(model_dir)
    (model_dir / "endpoint.json").unlink()
    with pytest.raises(EndpointModelError, match=r"endpoint\.json"):
        load_endpoint_model(model_dir)


# --------------------------------------------------------------------------- SageMaker API (Stubber)


def _stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def _full_settings() -> SageMakerServing:
    return SageMakerServing(
        endpoint_name=ENDPOINT, execution_role_arn=ROLE, image_uri=IMAGE, source_uri=SOURCE, kms_key_arn=KEY
    )


def _described(status: str, config: str) -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": "2026-11-23T00:00:00Z",
        "LastModifiedTime": "2026-11-23T00:00:00Z",
    }


def _expect_model_and_config(stubber: Stubber, name: str, url: str, *, exist: bool = False) -> None:
    if exist:
        for operation in ("create_model", "create_endpoint_config"):
            stubber.add_client_error(operation, "ValidationException", f"Cannot create already existing {name}.")
        return
    stubber.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:{REGION}:123456789012:model/{name}"},
        expected_params={
            "ModelName": name,
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": url,
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": SOURCE,
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    "SAGEMAKER_REGION": REGION,
                },
            },
        },
    )
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/{name}"},
        expected_params={
            "EndpointConfigName": name,
            "KmsKeyId": KEY,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10},
                }
            ],
        },
    )


URL = "s3://artifacts/serving/sagemaker/v2-0123456789abcdef/model.tar.gz"
NAME = f"{ENDPOINT}-v2-01234567"


def test_the_first_deployment_creates_model_configuration_and_endpoint() -> None:
    client, stubber = _stubbed("sagemaker")
    _expect_model_and_config(stubber, NAME, URL)
    stubber.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".')
    stubber.add_response(
        "create_endpoint",
        {"EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}"},
        expected_params={"EndpointName": ENDPOINT, "EndpointConfigName": NAME},
    )
    with stubber:
        SageMakerEndpointDeployer(_full_settings(), client=client).deploy(model_data_url=URL, deployment_name=NAME)
    stubber.assert_no_pending_responses()


def test_a_new_champion_updates_the_endpoint_and_a_retry_tolerates_what_exists() -> None:
    client, stubber = _stubbed("sagemaker")
    _expect_model_and_config(stubber, NAME, URL, exist=True)
    stubber.add_response("describe_endpoint", _described("InService", f"{ENDPOINT}-v1-aaaaaaaa"))
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}"},
        expected_params={"EndpointName": ENDPOINT, "EndpointConfigName": NAME},
    )
    # Deployed already (a retried promotion): no update.
    _expect_model_and_config(stubber, NAME, URL, exist=True)
    stubber.add_response("describe_endpoint", _described("InService", NAME))
    deployer = SageMakerEndpointDeployer(_full_settings(), client=client)
    with stubber:
        deployer.deploy(model_data_url=URL, deployment_name=NAME)
        deployer.deploy(model_data_url=URL, deployment_name=NAME)
    stubber.assert_no_pending_responses()


def test_an_access_error_is_reported_by_code() -> None:
    client, stubber = _stubbed("sagemaker")
    stubber.add_client_error("create_model", "AccessDeniedException", "not authorized for iam:PassRole")
    with stubber, pytest.raises(EndpointUnavailableError, match="AccessDeniedException"):
        SageMakerEndpointDeployer(_full_settings(), client=client).deploy(model_data_url=URL, deployment_name=NAME)


def test_deploying_needs_role_image_and_source() -> None:
    with pytest.raises(ConfigurationError, match=r"CLINRISK_SAGEMAKER__EXECUTION_ROLE_ARN.*IMAGE_URI.*SOURCE_URI"):
        SageMakerEndpointDeployer(SageMakerServing(endpoint_name=ENDPOINT), client=object())


# --------------------------------------------------------------------------- InvokeEndpoint (Stubber)


def _request() -> PredictRequest:
    return PredictRequest.model_validate({"encounters": _records(4)})


def test_the_lambda_scores_through_invoke_endpoint(model_dir: Path) -> None:
    request = _request()
    records = [e.to_record() for e in request.encounters]
    priors = [int(r.pop("prior_encounters")) for r in records]
    body = request_body(records, priors, bands=BANDS, top_k=2)
    answer = _transform(load_endpoint_model(model_dir), body)
    client, stubber = _stubbed("sagemaker-runtime")
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": CONTENT_TYPE},
        expected_params={"EndpointName": ENDPOINT, "ContentType": CONTENT_TYPE, "Accept": CONTENT_TYPE, "Body": body},
    )
    with stubber:
        outcome = predict_with_endpoint(
            request, endpoint=SageMakerEndpointInvoker(ENDPOINT, client=client), request_id="r", bands=BANDS, top_k=2
        )
    predictions = [p.model_dump() for p in outcome.response.predictions]  # fields named by the task file
    assert [p["encounter_id"] for p in predictions] == [r["encounter_id"] for r in records]
    assert all(
        len(p["factors"]) == 2 and p["model_version"] == 1 and not math.isnan(p["probability"]) for p in predictions
    )


@pytest.mark.parametrize(
    ("code", "message", "raised"),
    [
        ("ModelError", "Received server error (500) from model", EndpointFailedError),
        ("ThrottlingException", "Rate exceeded", EndpointUnavailableError),
        ("ValidationException", f"Could not find endpoint {ENDPOINT}.", EndpointUnavailableError),
    ],
)
def test_endpoint_errors_become_the_ports_errors(code: str, message: str, raised: type[Exception]) -> None:
    client, stubber = _stubbed("sagemaker-runtime")
    stubber.add_client_error("invoke_endpoint", code, message, expected_params={"EndpointName": ENDPOINT,
                             "ContentType": CONTENT_TYPE, "Accept": CONTENT_TYPE, "Body": ANY})  # fmt: skip
    with stubber, pytest.raises(raised, match=code):
        predict_with_endpoint(
            _request(), endpoint=SageMakerEndpointInvoker(ENDPOINT, client=client), request_id="r", bands=BANDS, top_k=1
        )


@pytest.mark.parametrize(
    ("error", "status"), [(EndpointFailedError("detail-xyz"), 502), (EndpointUnavailableError("detail-xyz"), 503)]
)
def test_the_handler_maps_endpoint_errors_to_statuses(
    deployed: Settings, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    class Failing:
        def invoke(self, body: bytes) -> bytes:
            raise error

    serving = predict_routes.serving()
    monkeypatch.setattr(predict_routes, "serving", lambda: dataclasses.replace(serving, endpoint=Failing()))
    response = _call("/v1/predict", method="POST", body={"encounters": _records(2)})
    assert response["statusCode"] == status
    assert "detail-xyz" not in response["body"]


def test_an_answer_that_is_not_one_is_502(deployed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = LocalEndpoint(build_ports(deployed).store, name=ENDPOINT, state_dir=deployed.home_dir / "endpoints")
    short = json.loads(endpoint.invoke(request_body([_records(1)[0]], [0], bands=BANDS, top_k=1)))
    assert short["model_version"] == 1

    class Truncating:
        def invoke(self, body: bytes) -> bytes:
            return json.dumps({**short, "scored": short["scored"][:1]}).encode()

    serving = predict_routes.serving()
    monkeypatch.setattr(predict_routes, "serving", lambda: dataclasses.replace(serving, endpoint=Truncating()))
    response = _call("/v1/predict", method="POST", body={"encounters": _records(3)})
    assert response["statusCode"] == 502
