"""The managed MLflow tracking server and the Lambdas' MLflow client run the same minor version.

SageMaker's guide ("Integrate MLflow with your environment") pairs each tracking server version with
one client version (tracking server 3.0.x: mlflow 3.0); a client newer than the server calls REST
endpoints the server does not have. The server's version is MLFLOW_VERSION in the MLflow construct
(the template's MlflowVersion, asserted in tests/infrastructure/test_first_deploy.py); the clients are the
mlflow-skinny pins of the Lambda locks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdk_app.constructs.mlflow_server import MLFLOW_VERSION

REPO = Path(__file__).resolve().parents[2]
LOCKS_WITH_MLFLOW = ("lambdas/pipeline/requirements.txt", "lambdas/promote/requirements.txt")


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = (int(part) for part in version.split("."))
    return major, minor_


def skinny_pin(lock_text: str) -> str:
    (pin,) = re.findall(r"^mlflow-skinny==([0-9][0-9.]*)\b", lock_text, flags=re.MULTILINE)
    return pin


def disagreements(server: str, locks: dict[str, str]) -> dict[str, str]:
    """Each lock whose mlflow-skinny pin is not of the server's minor version, with its pin."""
    return {path: pin for path, text in locks.items() if minor(pin := skinny_pin(text)) != minor(server)}


def test_the_server_is_on_mlflow_3() -> None:
    assert minor(MLFLOW_VERSION)[0] == 3


def test_every_lambda_client_matches_the_servers_minor_version() -> None:
    locks = {path: (REPO / path).read_text(encoding="utf-8") for path in LOCKS_WITH_MLFLOW}
    assert disagreements(MLFLOW_VERSION, locks) == {}


def test_the_check_fails_when_they_disagree() -> None:
    lock = "mlflow-skinny==3.17.2   # a comment\nsagemaker-mlflow==0.5.0\n"
    assert disagreements("3.0", {"lambdas/x/requirements.txt": lock}) == {"lambdas/x/requirements.txt": "3.17.2"}
    assert disagreements("3.17", {"lambdas/x/requirements.txt": lock}) == {}


def test_a_lock_without_exactly_one_pin_is_an_error() -> None:
    with pytest.raises(ValueError):
        skinny_pin("mlflow-skinny>=3\n")
