"""The prediction API's resolver and Powertools: created once per process, shared by the routes,
the error mapping and the entry point (`handler.py`).

No `from __future__ import annotations` in this package: Powertools reads the route signatures at
run time to find the body model and the response model.
"""

import os
import warnings
from pathlib import Path

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from lambdas.predict.json_body import parse

SERVICE = "clinrisk-predict"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "clinrisk")


def powertools(service: str) -> tuple[Logger, Tracer, Metrics]:
    """An API function's logger, tracer and metrics (the explain function's too)."""
    # Routes that record no metric (health, errors) are normal here, not worth a warning each.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    return Logger(service=service), Tracer(service=service), Metrics(service=service, namespace=NAMESPACE)


def resolver() -> APIGatewayRestResolver:
    """A validating resolver with the strict JSON body reading: duplicate keys, excessive nesting and NaN are 422s."""
    return APIGatewayRestResolver(enable_validation=True, json_body_deserializer=parse)


logger, tracer, metrics = powertools(SERVICE)
API_TITLE = "clinrisk prediction API"
API_VERSION = "1"
API_DESCRIPTION = (
    "Clinical risk models, one per task, with exact TreeSHAP risk factors. `/v1/predict` and `/v1/model` "
    "are 30-day readmission of diabetic inpatients (UCI Diabetes 130-US hospitals schema); every task "
    "(`GET /v1/tasks`) has `/v1/tasks/{task}/predict` and `/v1/tasks/{task}/model`, with a request schema "
    "generated from its task file: its columns, units, plausible ranges and codes. Bearer tokens carry "
    "scopes `clinrisk/predict`, `clinrisk/explain` and `clinrisk/admin` (Cognito in the cloud, "
    "`clinrisk token create` locally). Unknown category values are rejected with 422, never mapped to "
    "a default. Types are strict: an integer field takes a JSON Schema integer (`9`, or `9.0`, which "
    'JSON Schema counts as the integer 9), never `true`, `"9"` or `9.5`; a string field takes a string. '
    "Field names are exactly the names shown (the UCI column names for readmission, the task file's "
    "column names for the other tasks); a key given twice in one object is refused with its path."
)
# Checked into the repository (`make openapi`); tests/integration/test_api_contract.py keeps it in sync.
OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

app = resolver()
app.configure_openapi(
    title=API_TITLE,
    version=API_VERSION,
    description=API_DESCRIPTION,
    security_schemes={"bearer": HTTPBearer(bearerFormat="JWT")},
    security=[{"bearer": []}],
)
