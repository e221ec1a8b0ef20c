"""Serving several tasks (issue 14 part 4): readmission's latency alone and with three tasks loaded.

    .venv/bin/python benchmarks/tasks_serving.py [--root DIR] [--requests N] [--rounds R]

The three tasks are readmission, heart disease (its task file, trained on its synthetic cohort) and
a stroke task drafted by `clinrisk task init` from a synthetic CSV (`tests/three_tasks.py` builds
them into `--root`, or reuses a root it built before). The predict handler is called in process with
API Gateway proxy events, one record per request, as `benchmarks/serving.py` does, in two kinds of
fresh interpreter, alternated `--rounds` times so that the machine's load falls on both alike:

- `alone`: the deployment serves readmission only (an empty task directory);
- `loaded`: it serves the three tasks, and heart disease's and stroke's models are loaded (one
  request each, whose latency, the lazy load, is reported as `first_request_ms`) before
  readmission is measured; heart disease and stroke are then measured the same way.

Prints one JSON document: p50/p99 per configuration and task, and `ratio` (loaded ÷ alone) for
readmission's p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "benchmarks")]

import serving as serving_bench  # noqa: E402  (benchmarks/serving.py: its percentile and milliseconds)

CLAIMS = {"sub": "bench", "scope": "clinrisk/predict"}
HEART = {"row_id": "h-1", "age": 63, "sex": 1, "cp": 4, "trestbps": 145, "chol": 233, "fbs": True, "restecg": 2,
         "thalach": 150, "exang": False, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": 6}  # fmt: skip
STROKE = {"visit_id": "v-1", "age": 71, "sex": "M", "hypertension": True, "avg_glucose_level": 190.5, "bmi": None,
          "smoking_status": "current"}  # fmt: skip


def _summary(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "requests": len(seconds),
        "p50_ms": serving_bench._ms(serving_bench._percentile(seconds, 50)),
        "p99_ms": serving_bench._ms(serving_bench._percentile(seconds, 99)),
        "mean_ms": serving_bench._ms(statistics.fmean(seconds)),
    }


# --------------------------------------------------------------------------- the worker (one interpreter)


def _caller(path: str, bodies: list[bytes]) -> Callable[[int], int]:
    from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
    from lambdas.predict.handler import handler  # type: ignore[import-not-found, unused-ignore]

    def event(body: bytes) -> tuple[dict[str, Any], Any]:
        request_id = str(uuid.uuid4())
        request = HttpRequest(method="POST", path=path, query_string=b"", body=body, source_ip="127.0.0.1",
                              headers=[("content-type", "application/json")], protocol="HTTP/1.1")  # fmt: skip
        built = proxy_event(request, claims=CLAIMS, request_id=request_id, received_at=time.time())
        return built, LocalLambdaContext(aws_request_id=request_id, deadline_epoch=time.time() + 29)

    events = [event(body) for body in bodies]  # built outside the timed region

    def call(i: int) -> int:
        status: int = handler(*events[i % len(events)])["statusCode"]
        return status

    return call


def _timed(call: Callable[[int], int], requests: int) -> list[float]:
    times = []
    for i in range(requests):
        started = time.perf_counter()
        status = call(i)
        times.append(time.perf_counter() - started)
        if status != 200:
            raise SystemExit(f"request {i} answered {status}")
    return times


def worker(kind: str, requests: int) -> dict[str, Any]:
    from tests.integration.predict_events import records

    readmission = _caller("/v1/predict", [json.dumps({"encounters": [r]}).encode() for r in records(50)])
    _timed(readmission, 50)  # warm: imports, first load, caches
    result: dict[str, Any] = {}
    if kind == "loaded":
        heart = _caller("/v1/tasks/heart-disease/predict", [json.dumps({"records": [HEART]}).encode()])
        stroke = _caller("/v1/tasks/stroke/predict", [json.dumps({"records": [STROKE]}).encode()])
        result["first_request_ms"] = {
            "heart-disease": round(_timed(heart, 1)[0] * 1000, 3),
            "stroke": round(_timed(stroke, 1)[0] * 1000, 3),
        }
        result["heart-disease"] = _timed(heart, requests)
        result["stroke"] = _timed(stroke, requests)
    result["readmission"] = _timed(readmission, requests)
    return result


# --------------------------------------------------------------------------- the parent


def _prepare(root: Path) -> Path:
    if not (root / "home" / "store" / "serving" / "stroke" / "champion.json").is_file():
        os.environ["CLINRISK_HOME"] = str(root / "home")
        os.environ.setdefault("CLINRISK_BOOTSTRAP_ROUNDS", "50")
        from tests.three_tasks import build_three_tasks

        build_three_tasks(root)
    (root / "no-tasks").mkdir(exist_ok=True)
    return root


def _run_worker(root: Path, kind: str, requests: int, scratch: Path) -> dict[str, Any]:
    tasks = root / ("tasks" if kind == "loaded" else "no-tasks")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CLINRISK_HOME": str(root / "home"),
           "CLINRISK_TASKS_DIR": str(tasks), "POWERTOOLS_METRICS_NAMESPACE": "clinrisk-bench",
           "CLINRISK_MONITORING__CAPTURE": "false", "POWERTOOLS_LOG_LEVEL": "WARNING"}  # fmt: skip
    out = scratch / f"{kind}-{uuid.uuid4().hex[:6]}.json"
    command = [sys.executable, __file__, "--worker", kind, "--requests", str(requests), "--out", str(out)]
    subprocess.run(command, env=env, check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run(root: Path, requests: int, rounds: int) -> dict[str, Any]:
    started = time.time()
    samples: dict[str, dict[str, list[float]]] = {"alone": {}, "loaded": {}}
    first: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="clinrisk-bench-tasks-") as scratch:
        for _ in range(rounds):
            for kind in ("alone", "loaded"):
                result = _run_worker(root, kind, requests, Path(scratch))
                if "first_request_ms" in result:
                    first.append(result.pop("first_request_ms"))
                for task, times in result.items():
                    samples[kind].setdefault(task, []).extend(times)
    summary = {kind: {task: _summary(times) for task, times in tasks.items()} for kind, tasks in samples.items()}
    alone, loaded = summary["alone"]["readmission"], summary["loaded"]["readmission"]
    return {
        "command": f"benchmarks/tasks_serving.py --root {root} --requests {requests} --rounds {rounds}",
        "requests_per_task_per_round": requests,
        "rounds": rounds,
        "load_average": os.getloadavg(),
        "readmission_alone": alone,
        "with_three_tasks_loaded": summary["loaded"],
        "ratio": {
            "readmission_p50_loaded_over_alone": round(loaded["p50_ms"] / alone["p50_ms"], 3),
            "readmission_p99_loaded_over_alone": round(loaded["p99_ms"] / alone["p99_ms"], 3),
        },
        "first_request_ms": first,
        "seconds": round(time.time() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="A root built by tests/three_tasks.py (built there if empty).")
    parser.add_argument("--requests", type=int, default=500, help="Requests per task per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=("alone", "loaded"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.out.write_text(json.dumps(worker(args.worker, args.requests)))
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    root = args.root or Path(tempfile.mkdtemp(prefix="clinrisk-three-tasks-"))
    print(json.dumps(run(_prepare(root.resolve()), args.requests, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
