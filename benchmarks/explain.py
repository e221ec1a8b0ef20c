"""Local explain end to end, in process, as JSON.

    .venv/bin/python benchmarks/explain.py --home .clinrisk      (a home with a champion: make run)

Ingests knowledge/ into the home's local index (a no-op when already there), then sends
`--requests` API Gateway events for different encounters through the explain Lambda handler
(Powertools, validation, scoring, four factor queries over the hybrid index, the similar-patient
search over the champion's training encounters, the deterministic writer, verification,
serialisation) and times each call.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def encounters(count: int) -> list[dict[str, Any]]:
    from clinrisk.data.validation import ensure_valid
    from clinrisk.tasks.readmission.synth import generate_cohort

    frame = ensure_valid(generate_cohort(count, seed=303), require_target=False).drop(columns=["readmitted"])
    return [
        {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()}
        for r in json.loads(frame.to_json(orient="records"))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path(".clinrisk"))
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    os.environ["CLINRISK_HOME"] = str(args.home.resolve())
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "clinrisk-bench")
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"

    from clinrisk.explain.corpus import load_directory
    from clinrisk.explain.ingest import sync
    from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
    from clinrisk.runtime import build_knowledge_index
    from clinrisk.settings import Settings
    from lambdas.explain.handler import handler

    sync(load_directory(ROOT / "knowledge"), build_knowledge_index(Settings()))
    records = encounters(args.requests + 1)
    claims = {"sub": "bench", "scope": "clinrisk/explain"}

    def call(record: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"encounter": record}).encode()
        request = HttpRequest(
            method="POST",
            path="/v1/explain",
            query_string=b"",
            headers=[("content-type", "application/json")],
            body=body,
            source_ip="127.0.0.1",
            protocol="HTTP/1.1",
        )
        rid = str(uuid.uuid4())
        event = proxy_event(request, claims=claims, request_id=rid, received_at=time.time())
        with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF lines, as CloudWatch would take them
            return handler(event, LocalLambdaContext(aws_request_id=rid, deadline_epoch=time.time() + 30))

    started = time.perf_counter()
    first = call(records[0])
    first_ms = (time.perf_counter() - started) * 1000
    timings, degraded, citations = [], 0, []
    for record in records[1:]:
        began = time.perf_counter()
        response = call(record)
        timings.append((time.perf_counter() - began) * 1000)
        body = json.loads(response["body"])
        assert response["statusCode"] == 200, body
        degraded += bool(body["degraded"])
        citations.append(len(body["citations"]))
    ms = np.array(timings)
    print(
        json.dumps(
            {
                "requests": len(timings),
                "first_request_ms": round(first_ms, 1),
                "first_status": first["statusCode"],
                "ms": {q: round(float(np.percentile(ms, int(q[1:]))), 2) for q in ("p50", "p90", "p99")},
                "max_ms": round(float(ms.max()), 2),
                "degraded": degraded,
                "mean_citations": round(float(np.mean(citations)), 2),
                "load_average_1m": round(os.getloadavg()[0], 1),
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
