"""The serving pointer: one small JSON object naming the model that serving must use.

Promotion writes it last, after the registry alias has moved; the object store replaces it
whole, so a reader never sees half a pointer.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, ValidationError

from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectNotFoundError, ObjectStore

POINTER_KEY = "serving/champion.json"


class CorruptPointerError(ClinriskError):
    """The pointer object exists but is not a valid pointer."""


class ServingPointer(BaseModel):
    model_name: str
    version: int
    model_uri: str = Field(description="MLflow URI of the registered version, models:/NAME/VERSION.")
    artifact_prefix: str = Field(description="Object-store prefix of the model directory.")
    checksum: str = Field(description="sha256 of the model directory (clinrisk.model.directory_checksum).")
    run_id: str
    promoted_at: datetime
    previous_version: int | None = None


def read_pointer(store: ObjectStore) -> ServingPointer | None:
    try:
        raw = store.read_bytes(POINTER_KEY)
    except ObjectNotFoundError:
        return None
    try:
        return ServingPointer.model_validate_json(raw)
    except ValidationError as error:
        raise CorruptPointerError(f"serving pointer {store.uri(POINTER_KEY)} is not valid JSON of a pointer") from error


def write_pointer(store: ObjectStore, pointer: ServingPointer) -> None:
    store.write_bytes(POINTER_KEY, pointer.model_dump_json(indent=2).encode())
