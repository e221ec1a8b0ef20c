"""The prediction API's domain: request and response models, and what each route does.

The Lambda handler (`lambdas/predict/handler.py`) parses into these models and calls these
functions; the local server runs that same handler. Unknown categories are rejected, not
mapped to "other": the model never saw such a value, so any score would be a guess, and
training validation rejects them too. Batch scoring applies the same rule row by row.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError

from clinrisk.capture.capturer import Capturer
from clinrisk.ports import EndpointFailedError, EndpointInvoker, ObjectStore
from clinrisk.registry.serving_pointer import ServingPointer, read_pointer
from clinrisk.serving.capture import capture_scored
from clinrisk.serving.endpoint_contract import parse_response, request_body
from clinrisk.serving.model_holder import Deployment, HolderStatus, ModelHolder, NoChampionError
from clinrisk.serving.scoring import Bands, Scored, ServingModel
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.features import FEATURE_NAMES
from clinrisk.tasks.readmission.schema import FEATURE_COLUMNS, ID_COLUMNS, ColumnKind, Encounter, field_definition
from clinrisk.taskspec.catalogue import PACKAGED_TASK_FILES
from clinrisk.taskspec.spec import load_task

MAX_ENCOUNTERS = 1000
# Ids over JSON: every JSON client holds integers exactly up to 2**53 - 1 (JavaScript's
# Number.MAX_SAFE_INTEGER), so the API takes ids up to there; files may hold any 64-bit id.
MAX_JSON_ID = 2**53 - 1
_INTEGER_KINDS = (ColumnKind.CODE, ColumnKind.INTEGER, ColumnKind.IDENTIFIER)
_INTEGER_FIELDS = (
    *(spec.field_name for spec in (*ID_COLUMNS, *FEATURE_COLUMNS) if spec.kind in _INTEGER_KINDS),
    "prior_encounters",
)


def _json_integer(cls: type[BaseModel], value: Any) -> Any:
    """JSON Schema's integer, which the document promises: 9, and 9.0 (a number with no fraction is
    the integer 9 in JSON Schema, so the document cannot exclude it); never true, "9" or 9.5. Strict
    mode refuses floats, and Literal[1, 2, ...] codes would take true (it equals 1): hence this."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict, as the API documents it: integer fields take JSON Schema integers only, strings take
# strings; and only the UCI column names (not the Python field names, e.g. glyburide_metformin).
EncounterInput: type[Encounter] = create_model(
    "EncounterInput",
    __base__=Encounter,
    __doc__="One encounter to score, in the UCI schema, with the patient's count of earlier encounters.",
    __cls_kwargs__={"strict": True, "validate_by_name": False},
    __validators__={"integers": field_validator(*_INTEGER_FIELDS, mode="before")(_json_integer)},
    **{spec.field_name: field_definition(replace(spec, maximum=MAX_JSON_ID)) for spec in ID_COLUMNS},
    prior_encounters=(
        int,
        Field(
            0,
            ge=0,
            le=1000,
            description="This patient's earlier inpatient encounters (the model was trained with this count).",
        ),
    ),
)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    encounters: list[EncounterInput] = Field(min_length=1, max_length=MAX_ENCOUNTERS)

    def __repr__(self) -> str:
        # Powertools formats the parsed body into a debug message on every request, logged or
        # not: a count keeps that cheap at 1,000 encounters, and keeps patient values out of it.
        return f"PredictRequest(encounters=<{len(self.encounters)} encounters>)"


# Readmission's record id, as its task file names it: echoed in each prediction, under its own name.
RECORD_ID = load_task(PACKAGED_TASK_FILES[0]).spec.record_id
_PREDICTION_FIELDS: dict[str, Any] = {RECORD_ID: (int, ...), "model_version": (int, ...)}
Prediction: type[Scored] = create_model("Prediction", __base__=Scored, **_PREDICTION_FIELDS)


class PredictResponse(BaseModel):
    request_id: str
    model_name: str
    model_version: int = Field(description="The version that answered (the champion, or a canary).")
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    model_name: str
    version: int
    promoted_at: datetime
    trained_at: datetime | None
    metrics: dict[str, float]
    features: list[str]
    challenger: dict[str, Any] | None
    serving_status: Literal["current", "stale"] = Field(
        description="`stale`: the serving pointer could not be re-read, so the last good model is serving."
    )
    status_detail: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the handler needs for its metrics and logs besides the response."""

    response: PredictResponse
    high_risk: int
    seconds: float
    shadow: ShadowOutcome | None


@dataclass(frozen=True)
class ShadowOutcome:
    version: int
    high_risk: int
    mean_absolute_difference: float
    scored: list[Scored]


def predict(
    request: PredictRequest, *, deployment: Deployment[ServingModel], request_id: str, bands: Bands, top_k: int
) -> Outcome:
    """Score in this process with the deployment's answering model (the `lambda` serving mode)."""
    started = time.perf_counter()
    model = deployment.answering_model(request_id)
    records, priors = _records(request)
    scored = model.score(records, priors, bands=bands, top_k=top_k)
    response = _response(request_id, model.name, model.version, records, scored)
    shadow = _shadow(deployment.shadow_model(), records, priors, bands, scored)
    return Outcome(response=response, high_risk=_high(response), seconds=time.perf_counter() - started, shadow=shadow)


def predict_with_endpoint(
    request: PredictRequest, *, endpoint: EndpointInvoker, request_id: str, bands: Bands, top_k: int
) -> Outcome:
    """Score on the SageMaker endpoint (the `sagemaker` serving mode). The response names the version
    the endpoint answered with, which during an endpoint update may still be the previous champion."""
    started = time.perf_counter()
    records, priors = _records(request)
    answer = parse_response(endpoint.invoke(request_body(records, priors, bands=bands, top_k=top_k)))
    if len(answer.scored) != len(records):
        raise EndpointFailedError(f"the endpoint scored {len(answer.scored)} of {len(records)} encounters")
    response = _response(request_id, answer.model_name, answer.model_version, records, answer.scored)
    return Outcome(response=response, high_risk=_high(response), seconds=time.perf_counter() - started, shadow=None)


def _records(request: PredictRequest) -> tuple[list[dict[str, Any]], list[int]]:
    # Each encounter as `Encounter.to_record()` gives it, dumped in one call for the whole request.
    records: list[dict[str, Any]] = request.model_dump(by_alias=True)["encounters"]
    priors = [int(r.pop("prior_encounters")) for r in records]
    return records, priors


def _response(
    request_id: str, name: str, version: int, records: list[dict[str, Any]], scored: list[Scored]
) -> PredictResponse:
    predictions = scored_records(scored, records, id_field=RECORD_ID, version=version)
    return PredictResponse.model_validate(
        {"request_id": request_id, "model_name": name, "model_version": version, "predictions": predictions}
    )


def scored_records(
    scored: Sequence[Scored], records: Sequence[Mapping[str, Any]], *, id_field: str, version: int, echo_as: str = ""
) -> list[dict[str, Any]]:
    """Every task's predictions, before their response model validates them (once, for the whole
    response): each record's scores, its id (the task's record-id column, echoed under `echo_as`,
    else under its own name) and the version that scored it. The factors are validated already."""
    key = echo_as or id_field
    return [
        {"probability": s.probability, "band": s.band, "factors": s.factors, key: r[id_field], "model_version": version}
        for s, r in zip(scored, records, strict=True)
    ]


def _high(response: PredictResponse) -> int:
    return high_risk(response.predictions)


def high_risk(scored: Sequence[Scored]) -> int:
    return sum(s.band == "high" for s in scored)


def _shadow(
    model: ServingModel | None, records: list[dict[str, Any]], priors: list[int], bands: Bands, answered: list[Scored]
) -> ShadowOutcome | None:
    """Score the shadow challenger on the same encounters; it is measured, never returned."""
    if model is None:
        return None
    shadowed = model.score(records, priors, bands=bands, top_k=0)
    gap = sum(abs(s.probability - a.probability) for s, a in zip(shadowed, answered, strict=True)) / len(answered)
    return ShadowOutcome(
        version=model.version,
        high_risk=high_risk(shadowed),
        mean_absolute_difference=gap,
        scored=shadowed,
    )


def model_info(deployment: Deployment[Any], status: HolderStatus, features: list[str] | None = None) -> ModelInfo:
    challenger = deployment.route.model_dump(include={"version", "mode", "fraction"}) if deployment.route else None
    return _info(deployment.pointer, challenger, status.error, features)


def pointer_model_info(pointer: ServingPointer | None) -> ModelInfo:
    """`GET /v1/model` in the `sagemaker` serving mode: the champion the registry names. The endpoint
    serves the champion only; a challenger route in the pointer applies to the `lambda` mode."""
    if pointer is None:
        raise NoChampionError("no champion model has been promoted yet")
    return _info(pointer, None, None)


def _info(
    pointer: ServingPointer, challenger: dict[str, Any] | None, error: str | None, features: list[str] | None = None
) -> ModelInfo:
    return ModelInfo(
        model_name=pointer.model_name,
        version=pointer.version,
        promoted_at=pointer.promoted_at,
        trained_at=pointer.trained_at,
        metrics=pointer.metrics,
        features=FEATURE_NAMES if features is None else features,  # readmission's unless a task's are given
        challenger=challenger,
        serving_status="stale" if error is not None else "current",
        status_detail=error,
    )


@dataclass(frozen=True)
class Serving:
    """What answers the API, built once per process (`clinrisk.runtime.build_serving`): in the `lambda` serving mode
    the holder, which follows the serving pointer by itself; in the `sagemaker` mode the endpoint."""

    settings: Settings
    bands: Bands
    store: ObjectStore
    holder: ModelHolder | None
    endpoint: EndpointInvoker | None
    capture: Capturer | None = None

    def predict(self, request: PredictRequest, *, request_id: str) -> Outcome:
        top_k = self.settings.serving.top_factors
        if self.endpoint is not None:
            outcome = predict_with_endpoint(
                request, endpoint=self.endpoint, request_id=request_id, bands=self.bands, top_k=top_k
            )
        else:
            deployment = self._holder().current()
            outcome = predict(request, deployment=deployment, request_id=request_id, bands=self.bands, top_k=top_k)
        if self.capture is not None:
            shadow = (outcome.shadow.version, outcome.shadow.scored) if outcome.shadow else None
            capture_scored(
                self.capture, request_id=request_id, version=outcome.response.model_version,
                records=lambda: _records(request), scored=outcome.response.predictions, source="api", shadow=shadow,
            )  # fmt: skip
        return outcome

    def model_info(self) -> ModelInfo:
        if self.endpoint is not None:
            return pointer_model_info(read_pointer(self.store))
        holder = self._holder()
        return model_info(holder.current(), holder.status)

    def _holder(self) -> ModelHolder:
        if self.holder is None:  # build_serving gives one of holder and endpoint
            raise NoChampionError("serving has neither a model holder nor an endpoint")
        return self.holder
