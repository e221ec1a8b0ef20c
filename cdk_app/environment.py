"""The CLINRISK_* environment a function is deployed with, each name derived from the settings model
that reads it (`clinrisk.settings.Settings`, `clinrisk.batch.cloud.BatchSettings`, the approval
settings). A setting renamed in the library, or misspelt here, fails synthesis instead of being
ignored by the function at run time."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from clinrisk.settings import Settings

# Lambda's file system is read-only but for /tmp; the registry's lock and model caches live there.
LAMBDA_HOME = "/tmp/clinrisk"


class UnknownSettingError(KeyError):
    """A variable was asked for a setting its settings model does not have."""


def settings_environment(settings: type[BaseSettings], **values: str) -> dict[str, str]:
    """The variables that set `values` on `settings`: a nested field is reached with `__`, as the
    settings read it, e.g. settings_environment(Settings, backend="aws", sagemaker__endpoint_name=name)
    → {"CLINRISK_BACKEND": "aws", "CLINRISK_SAGEMAKER__ENDPOINT_NAME": name}."""
    return {variable_name(settings, path): value for path, value in values.items()}


def variable_name(settings: type[BaseSettings], path: str) -> str:
    prefix = settings.model_config.get("env_prefix") or ""
    delimiter = settings.model_config.get("env_nested_delimiter") or ""
    parts = path.split("__")
    if len(parts) > 1 and delimiter != "__":
        raise UnknownSettingError(f"{settings.__name__} reads no nested settings ({path})")
    model: type[BaseModel] = settings
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            raise UnknownSettingError(f"{model.__name__} has no setting {part!r} ({path})")
        if depth < len(parts) - 1:
            model = _model_of(field.annotation, path)
    return (prefix + delimiter.join(parts)).upper()


def backend_environment(*, artifacts_bucket: str, kms_key_id: str | None = None) -> dict[str, str]:
    """What every function on the aws backend reads: the backend, its home on /tmp, the artifacts
    bucket and, where it writes objects, the key for SSE-KMS."""
    values = {"backend": "aws", "home": LAMBDA_HOME, "artifacts_bucket": artifacts_bucket}
    if kms_key_id is not None:
        values["kms_key_id"] = kms_key_id
    return settings_environment(Settings, **values)


def _model_of(annotation: Any, path: str) -> type[BaseModel]:
    """The settings model a nested field holds (`SageMakerServing | None` → SageMakerServing)."""
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise UnknownSettingError(f"{path}: not a nested settings model")
