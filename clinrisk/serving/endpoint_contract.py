"""What the SageMaker endpoint of the `sagemaker` serving mode runs, and what travels to and from it.

The endpoint runs `sagemaker_jobs/inference.py` in the SageMaker XGBoost framework inference
image. The model archive (`clinrisk.serving.endpoint_archive`, unpacked by SageMaker into /opt/ml/model)
holds one registered version's model directory and its metadata, so the endpoint scores with
`ServingModel.score`, the same code as the predict Lambda and batch scoring, and every answer
says which version gave it. During an endpoint update the old version keeps answering until the
new one is in service, and its answers say so.

Requests carry records that the API has already validated (`clinrisk.serving.prediction`): the endpoint
trusts its one caller, whose role alone may invoke it, but still parses the body into a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinrisk.checksums import directory_checksum
from clinrisk.errors import ClinriskError
from clinrisk.serving.endpoint_archive import CONTENT_TYPE, METADATA_FILE, MODEL_SUBDIR, EndpointMetadata
from clinrisk.serving.scoring import Bands, Scored, ServingModel
from clinrisk.serving.task_scoring import TaskServingModel
from clinrisk.settings import DEFAULT_TASK


class EndpointModelError(ClinriskError):
    """A model archive for the endpoint is malformed, or does not match the checksum it carries."""


class EndpointRequestError(ClinriskError):
    """A request to the endpoint does not fit `EndpointRequest`; the message names fields, never values."""


class EndpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(min_length=1)
    prior_encounters: list[int]
    medium_from: float = Field(gt=0.0, lt=1.0)
    high_from: float = Field(gt=0.0, lt=1.0)
    top_k: int = Field(ge=0, le=28)


class EndpointResponse(BaseModel):
    model_name: str
    model_version: int
    checksum: str
    scored: list[Scored]


EndpointModel = ServingModel | TaskServingModel  # readmission's, or a task's made from its task file


def load_endpoint_model(model_dir: Path) -> EndpointModel:
    """The endpoint's `model_fn`: the version in `model_dir`, after checking it is the one it claims to
    be; a task other than readmission by its task file in the bundled catalogue (which must declare the
    features the version was trained on)."""
    try:
        metadata = EndpointMetadata.model_validate_json((model_dir / METADATA_FILE).read_bytes())
    except (OSError, ValidationError) as error:
        raise EndpointModelError(f"{model_dir} has no valid {METADATA_FILE}: {type(error).__name__}") from None
    files = model_dir / MODEL_SUBDIR
    if not files.is_dir() or directory_checksum(files) != metadata.checksum:
        raise EndpointModelError(f"the model files in {model_dir} do not match version {metadata.version}'s checksum")
    if metadata.task == DEFAULT_TASK:
        return ServingModel.load(files, name=metadata.model_name, version=metadata.version, checksum=metadata.checksum)
    from clinrisk.taskspec.catalogue import find_task

    return TaskServingModel.load(
        files, spec=find_task(metadata.task).spec, name=metadata.model_name, version=metadata.version,
        checksum=metadata.checksum,
    )  # fmt: skip


# --------------------------------------------------------------------------- one request


def request_body(
    records: Sequence[Mapping[str, Any]], prior_encounters: Sequence[int], *, bands: Bands, top_k: int
) -> bytes:
    request = EndpointRequest(
        records=[dict(r) for r in records],
        prior_encounters=list(prior_encounters),
        medium_from=bands.medium_from,
        high_from=bands.high_from,
        top_k=top_k,
    )
    return request.model_dump_json().encode()


def transform(model: EndpointModel, body: bytes, content_type: str) -> bytes:
    """The endpoint's `transform_fn`: score one request with the loaded version."""
    if content_type.split(";", maxsplit=1)[0].strip() != CONTENT_TYPE:
        raise EndpointRequestError(f"the endpoint takes {CONTENT_TYPE}, not {content_type!r}")
    try:
        request = EndpointRequest.model_validate_json(body)
    except ValidationError as error:
        fields = sorted({".".join(map(str, e["loc"])) or "(body)" for e in error.errors(include_input=False)})
        raise EndpointRequestError(f"invalid endpoint request: {', '.join(fields)}") from None
    bands = Bands(medium_from=request.medium_from, high_from=request.high_from)
    if isinstance(model, TaskServingModel):  # a task's records carry no prior encounters
        if request.prior_encounters:
            raise EndpointRequestError("invalid endpoint request: prior_encounters given for a task without them")
        scored = model.score(request.records, bands=bands, top_k=request.top_k)
    else:
        if len(request.prior_encounters) != len(request.records):
            raise EndpointRequestError("invalid endpoint request: prior_encounters and records differ in length")
        scored = model.score(request.records, request.prior_encounters, bands=bands, top_k=request.top_k)
    response = EndpointResponse(
        model_name=model.name, model_version=model.version, checksum=model.checksum, scored=scored
    )
    return response.model_dump_json().encode()


def parse_response(body: bytes) -> EndpointResponse:
    """The endpoint's answer; `EndpointFailedError` when it is not one."""
    try:
        return EndpointResponse.model_validate_json(body)
    except ValidationError as error:
        raise EndpointModelError(
            f"the endpoint's answer is not an EndpointResponse ({error.error_count()} problems)"
        ) from None
