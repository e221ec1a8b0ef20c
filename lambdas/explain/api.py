"""The explain API's resolver and Powertools: created once per process, shared by the route
(`routes.py`) and the entry point (`handler.py`).

No `from __future__ import annotations` in this package: Powertools reads the route signature at
run time to find the body model and the response model.
"""

from lambdas.predict.api import powertools, resolver

SERVICE = "clinrisk-explain"

logger, tracer, metrics = powertools(SERVICE)
# The same strict JSON reading as predict: duplicate keys, excessive nesting and NaN are 422s.
app = resolver()
