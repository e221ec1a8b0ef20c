"""The CLINRISK_* names CDK sets come from the settings models: a name the library does not read fails."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from cdk_app.environment import LAMBDA_HOME, UnknownSettingError, backend_environment, settings_environment
from clinrisk.batch.cloud import BatchSettings
from clinrisk.registry.approval import ApprovalRequestSettings
from clinrisk.settings import Settings


def test_names_are_the_ones_the_settings_read(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = settings_environment(
        Settings,
        backend="aws",
        artifacts_bucket="bucket",
        sagemaker__endpoint_name="endpoint",
        gate='{"auc_floor": 0.7}',
    )
    assert variables == {
        "CLINRISK_BACKEND": "aws",
        "CLINRISK_ARTIFACTS_BUCKET": "bucket",
        "CLINRISK_SAGEMAKER__ENDPOINT_NAME": "endpoint",
        "CLINRISK_GATE": '{"auc_floor": 0.7}',
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    read = Settings()
    assert (read.backend, read.artifacts_bucket, read.gate.auc_floor) == ("aws", "bucket", 0.7)
    assert read.sagemaker is not None and read.sagemaker.endpoint_name == "endpoint"


def test_other_settings_models_keep_their_prefix() -> None:
    assert settings_environment(BatchSettings, work_prefix="w") == {"CLINRISK_BATCH_WORK_PREFIX": "w"}
    assert settings_environment(ApprovalRequestSettings, approvals_topic_arn="t") == {
        "CLINRISK_APPROVALS_TOPIC_ARN": "t"
    }


@pytest.mark.parametrize(
    ("settings", "path"),
    [(Settings, "artifact_bucket"), (Settings, "sagemaker__endpoint"), (Settings, "seed__x"), (BatchSettings, "a__b")],
)
def test_a_setting_that_does_not_exist_fails(settings: type[BaseSettings], path: str) -> None:
    with pytest.raises(UnknownSettingError):
        settings_environment(settings, **{path: "x"})


def test_the_backend_environment() -> None:
    assert backend_environment(artifacts_bucket="b") == {
        "CLINRISK_BACKEND": "aws",
        "CLINRISK_HOME": LAMBDA_HOME,
        "CLINRISK_ARTIFACTS_BUCKET": "b",
    }
    assert backend_environment(artifacts_bucket="b", kms_key_id="k")["CLINRISK_KMS_KEY_ID"] == "k"
