"""The batch-scoring Lambdas and what each may touch, statement by statement.

Everything lives in the data bucket (scores are patient data, like the encounters they come from),
under `batch-scoring/`:

| function | bundle | reads | writes |
|---|---|---|---|
| plan | pipeline | `input/*`, serving pointer | `work/*/chunks/*`, `work/*/manifest.json`, `work/*/plan.json` |
| score | predict (numpy) | `work/*/chunks/*`, the model directories `runs/*/model/*` | `work/*/scored/*` |
| finish | predict (numpy) | `work/*/plan.json`, `work/*/scored/*` | `output/*` |

No function publishes to SNS (the state machine's Notify states do) and none calls MLflow: the
champion comes from the serving pointer, as the predict function takes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_app.constructs.network import PrivateNetwork
from cdk_app.constructs.python_function import (
    NETWORK_INTERFACE_REASON,
    PythonFunction,
    acknowledge_function_findings,
)
from cdk_app.environment import backend_environment, settings_environment
from cdk_app.permissions import allow_read_objects, allow_write_objects
from clinrisk.batch.cloud import BatchSettings
from clinrisk.registry.serving_pointer import POINTER_KEY

ROOT = "batch-scoring"
INPUT_PREFIX = f"{ROOT}/input/"
OUTPUT_PREFIX = f"{ROOT}/output/"
WORK_PREFIX = f"{ROOT}/work"  # clinrisk.batch.cloud.BatchSettings.work_prefix: <work>/<run id>/...
MAP_RESULTS_PREFIX = f"{ROOT}/map-results"  # the Distributed Map's ResultWriter (outside any run's files)
MODEL_DIRECTORIES = "runs/*/model/"
METRICS_NAMESPACE = "clinrisk"
# Plan holds the whole file in memory and checks it with pandas: 3008 MB buys two vCPUs, and
# 15 minutes covers files far larger than the UCI set (~100k rows, seconds).
PLAN_MEMORY_MB = 3008
PLAN_TIMEOUT = Duration.minutes(15)
# A chunk is at most 20,000 rows (clinrisk.batch.cloud.BatchRequest); 10,000 rows with all 28 TreeSHAP
# factors score in about 5 s on one vCPU, so five minutes is a wide margin.
SCORE_MEMORY_MB = 2048
SCORE_TIMEOUT = Duration.minutes(5)
FINISH_MEMORY_MB = 2048
FINISH_TIMEOUT = Duration.minutes(5)
RUN_CONCURRENCY = 2  # Plan and Finish: one run at a time, and one more that overlaps it


class BatchFunction(NamedTuple):
    """One function: `lambdas.batch_scoring.handler.<handler>` from `bundle`, and what it does (its state)."""

    id: str
    handler: str
    bundle: str
    does: str
    memory_size: int
    timeout: Duration


FUNCTIONS = (
    BatchFunction("Plan", "plan", "pipeline", "checks the file and splits it into chunks (Plan state)",
                  PLAN_MEMORY_MB, PLAN_TIMEOUT),
    BatchFunction("Score", "score_chunk", "predict", "scores one chunk with the pinned champion (ScoreChunk state)",
                  SCORE_MEMORY_MB, SCORE_TIMEOUT),
    BatchFunction("Finish", "finish", "predict", "joins the scored chunks into the output (Finish state)",
                  FINISH_MEMORY_MB, FINISH_TIMEOUT),
)  # fmt: skip


@dataclass(frozen=True)
class BatchResources:
    """What the functions are wired to (the Foundation stack's buckets and keys, and its network in the
    VPC variant, whose isolated subnets every function then runs in)."""

    data: s3.IBucket
    artifacts: s3.IBucket
    data_key: kms.IKey
    messaging_key: kms.IKey
    network: PrivateNetwork | None = None


class BatchScoringFunctions(Construct):
    plan: PythonFunction
    score: PythonFunction
    finish: PythonFunction

    def __init__(self, scope: Construct, id: str, *, resources: BatchResources, score_concurrency: int) -> None:
        super().__init__(scope, id)
        self._r = resources
        # Score: at least the Map's MaxConcurrency, so one run's chunks are not throttled by themselves.
        concurrency = {"Score": score_concurrency}
        self.plan, self.score, self.finish = (
            self._function(spec, reserved_concurrency=concurrency.get(spec.id, RUN_CONCURRENCY)) for spec in FUNCTIONS
        )
        self._grant()
        self._acknowledge()

    @property
    def all(self) -> tuple[PythonFunction, ...]:
        return (self.plan, self.score, self.finish)

    def _function(self, spec: BatchFunction, *, reserved_concurrency: int) -> PythonFunction:
        data = self._r.data.bucket_name
        return PythonFunction(
            self,
            spec.id,
            bundle=spec.bundle,
            handler=f"lambdas.batch_scoring.handler.{spec.handler}",
            description=f"clinrisk batch scoring: {spec.does}",
            data_key=self._r.data_key,
            log_key=self._r.messaging_key,
            environment={
                **backend_environment(
                    artifacts_bucket=self._r.artifacts.bucket_name, kms_key_id=self._r.data_key.key_arn
                ),
                **settings_environment(
                    BatchSettings,
                    work_bucket=data,
                    work_prefix=WORK_PREFIX,
                    input_locations=json.dumps([f"s3://{data}/{INPUT_PREFIX}"]),
                    output_locations=json.dumps([f"s3://{data}/{OUTPUT_PREFIX}"]),
                ),
                "POWERTOOLS_SERVICE_NAME": "clinrisk-batch",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            memory_size=spec.memory_size,
            timeout=spec.timeout,
            reserved_concurrency=reserved_concurrency,
            network=self._r.network,
        )

    def _grant(self) -> None:
        r = self._r
        work = f"{WORK_PREFIX}/*"
        allow_read_objects(self.plan.role, r.data, key=r.data_key, prefixes=(INPUT_PREFIX,))
        allow_read_objects(self.plan.role, r.artifacts, key=r.data_key, prefixes=(POINTER_KEY,))
        plan_writes = (f"{work}/chunks/", f"{work}/manifest.json", f"{work}/plan.json")
        allow_write_objects(self.plan.role, r.data, key=r.data_key, prefixes=plan_writes)

        allow_read_objects(self.score.role, r.data, key=r.data_key, prefixes=(f"{work}/chunks/",))
        allow_read_objects(self.score.role, r.artifacts, key=r.data_key, prefixes=(MODEL_DIRECTORIES,))
        allow_write_objects(self.score.role, r.data, key=r.data_key, prefixes=(f"{work}/scored/",))

        allow_read_objects(self.finish.role, r.data, key=r.data_key, prefixes=(f"{work}/plan.json", f"{work}/scored/"))
        allow_write_objects(self.finish.role, r.data, key=r.data_key, prefixes=(OUTPUT_PREFIX,))

    def _acknowledge(self) -> None:
        xray = (
            "X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions, so tracing needs '*'."
        )
        if self._r.network is not None:
            xray += " " + NETWORK_INTERFACE_REASON
        runs = "Work files are keyed by the execution name, known only at run time, hence batch-scoring/work/*/..."
        reasons = {
            self.plan: f"Plan reads the input files under batch-scoring/input/* and the serving pointer. {runs} {xray}",
            self.score: "Score reads the chunks of a run and the model directory runs/<run id>/model/ the pointer"
            f" named, both under ids made at run time. {runs} {xray}",
            self.finish: f"Finish writes output files under batch-scoring/output/*, named by the caller. {runs} {xray}",
        }
        acknowledge_function_findings(reasons)
