from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from clinrisk.settings import Settings


def test_defaults_keep_everything_under_a_project_local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.backend == "local"
    assert settings.home_dir == tmp_path / ".clinrisk"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / '.clinrisk' / 'mlflow.db'}"
    assert settings.store_root.is_relative_to(settings.home_dir)


def test_mlflow_tracking_uri_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert Settings().tracking_uri == "http://127.0.0.1:5000"


def test_nested_gate_rules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINRISK_GATE__AUC_FLOOR", "0.7")
    monkeypatch.setenv("CLINRISK_BACKEND", "aws")
    settings = Settings()
    assert settings.gate.auc_floor == 0.7
    assert settings.gate.max_auc_regression == 0.01
    assert settings.backend == "aws"


def test_each_task_has_its_sagemaker_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CDK app sets in the `sagemaker` serving mode (cdk_app/constructs/sagemaker_endpoint.py)."""
    monkeypatch.setenv("CLINRISK_SAGEMAKER__ENDPOINT_NAME", "clinrisk-dev-predict-0a1b2c3d")
    monkeypatch.setenv("CLINRISK_SAGEMAKER__ENDPOINT_NAMES", '{"heart-disease": "clinrisk-dev-heart-disease-0a1b2c3d"}')
    sagemaker = Settings().sagemaker
    assert sagemaker is not None
    assert sagemaker.endpoint_for("heart-disease") == "clinrisk-dev-heart-disease-0a1b2c3d"
    assert sagemaker.endpoint_for("readmission") == "clinrisk-dev-predict-0a1b2c3d"  # not listed: the default
    monkeypatch.setenv("CLINRISK_SAGEMAKER__ENDPOINT_NAMES", '{"heart-disease": "not_an endpoint"}')
    with pytest.raises(ValidationError, match="endpoint_names"):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CLINRISK_BACKEND", "gcp"), ("CLINRISK_OPERATING_THRESHOLD", "1.5"), ("CLINRISK_GATE__AUC_FLOOR", "0.3")],
)
def test_bad_settings_are_refused(variable: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_on_aws_new_experiments_keep_artifacts_in_the_tracking_servers_store(tmp_path: Path) -> None:
    assert Settings(backend="aws", home=tmp_path).experiment_artifact_location is None
    local = Settings(backend="local", home=tmp_path).experiment_artifact_location
    assert local == (tmp_path / "mlartifacts").resolve().as_uri()
