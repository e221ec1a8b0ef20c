"""The serving pointer: one small JSON object naming the model that serving must use.

Promotion writes it last, after the registry alias has moved; the object store replaces it
whole, so a reader never sees half a pointer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectNotFoundError, ObjectStore
from clinrisk.settings import DEFAULT_TASK

POINTER_KEY = "serving/champion.json"


def pointer_key(task: str = DEFAULT_TASK) -> str:
    """Each task's own pointer; readmission's stays where serving has always read it."""
    return POINTER_KEY if task == DEFAULT_TASK else f"serving/{task}/champion.json"


class CorruptPointerError(ClinriskError):
    """The pointer object exists but is not a valid pointer."""


class ModelFiles(BaseModel):
    version: int = Field(ge=1)
    artifact_prefix: str = Field(description="Object-store prefix of the model directory.")
    checksum: str = Field(description="sha256 of the model directory (clinrisk.model.risk_model.directory_checksum).")


class ChallengerRoute(ModelFiles):
    """A candidate served beside the champion: `canary` answers a fraction of requests (chosen
    by a hash of the request id, so a retried request lands on the same model); `shadow` is
    scored on every request and measured, but never answers."""

    mode: Literal["canary", "shadow"]
    fraction: float = Field(0.0, ge=0.0, le=1.0, description="Share of requests the canary answers.")

    @model_validator(mode="after")
    def _canary_has_traffic(self) -> ChallengerRoute:
        if self.mode == "canary" and not 0.0 < self.fraction < 1.0:
            raise ValueError("a canary needs a fraction strictly between 0 and 1")
        return self


class ServingPointer(BaseModel):
    model_name: str
    version: int
    model_uri: str = Field(description="MLflow URI of the registered version, models:/NAME/VERSION.")
    artifact_prefix: str = Field(description="Object-store prefix of the model directory.")
    checksum: str = Field(description="sha256 of the model directory (clinrisk.model.risk_model.directory_checksum).")
    run_id: str
    promoted_at: datetime
    previous_version: int | None = None
    trained_at: datetime | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="The version's test metrics at evaluation.")
    challenger: ChallengerRoute | None = None

    @property
    def champion_files(self) -> ModelFiles:
        return ModelFiles(version=self.version, artifact_prefix=self.artifact_prefix, checksum=self.checksum)


def read_pointer(store: ObjectStore, key: str = POINTER_KEY) -> ServingPointer | None:
    try:
        raw = store.read_bytes(key)
    except ObjectNotFoundError:
        return None
    try:
        return ServingPointer.model_validate_json(raw)
    except ValidationError as error:
        raise CorruptPointerError(f"serving pointer {store.uri(key)} is not valid JSON of a pointer") from error


def write_pointer(store: ObjectStore, pointer: ServingPointer, key: str = POINTER_KEY) -> None:
    store.write_bytes(key, pointer.model_dump_json(indent=2).encode())
