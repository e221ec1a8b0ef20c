"""The explain API's resolver and Powertools: created once per process, shared by the route
(`routes.py`) and the entry point (`handler.py`).

No `from __future__ import annotations` in this package: Powertools reads the route signature at
run time to find the body model and the response model.
"""

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from lambdas.predict.json_body import parse

SERVICE = "clinrisk-explain"

warnings.filterwarnings("ignore", message="No application metrics to publish")
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "clinrisk"))
# The same strict JSON reading as predict: duplicate keys, excessive nesting and NaN are 422s.
app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=parse)
