"""The batch-scoring state machine: `state_machines/batch_scoring.asl.json` with DefinitionSubstitutions.

The definition stays the ASL file (validated offline by tests/unit/test_batch_state_machine.py and
run in moto's interpreter by tests/integration/test_batch_scoring_cloud.py); this construct fills
its `${Name}` placeholders, refusing a variable it has no value for.

- STANDARD workflow; TimeoutSeconds comes from the ASL. Its Distributed Map starts STANDARD child
  executions of this same state machine, one per chunk.
- Logging level ALL to a KMS-encrypted log group, without execution data (as the retraining
  machine: the events and error names are what an audit and the alarms need); X-Ray on.
- Its own role, with every action named: invoke the three batch Lambdas; publish to the alerts
  topic; the Distributed Map's own calls (StartExecution on this state machine, Describe/Stop on
  its executions); GetObject of a run's manifest (ItemReader) and the ResultWriter's writes under
  its prefix, with the data key; and the log-delivery and X-Ray calls that have no resource-level
  permissions. The state machine's ARN is built from its fixed name, since a policy on its role
  cannot reference the state machine itself (a dependency cycle).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_app.constructs.logged_state_machine import LoggedStateMachine, MachineSpec
from cdk_app.permissions import KMS_DECRYPT, KMS_ENCRYPT
from cdk_app.state_machine import definition_text, substitution_variables
from clinrisk.batch.cloud import DEFINITION_FILE

MAP_STATE = "ScoreChunks"


def map_state(text: str) -> dict[str, object]:
    """The Distributed Map state of the definition (its label names the child executions)."""
    state: dict[str, object] = json.loads(text)["States"][MAP_STATE]
    return state


def map_max_concurrency(text: str | None = None) -> int:
    """How many chunks the Map scores at once; the score function reserves at least that much."""
    return int(str(map_state(text or definition_text(DEFINITION_FILE))["MaxConcurrency"]))


class BatchDefinitionOutOfSyncError(ValueError):
    """The ASL names a substitution variable that the CDK app gives no value."""


def batch_substitutions(text: str, values: Mapping[str, str]) -> dict[str, str]:
    """The values for exactly the variables `text` uses; raises if one has none."""
    missing = sorted(substitution_variables(text) - set(values))
    if missing:
        raise BatchDefinitionOutOfSyncError(
            "state_machines/batch_scoring.asl.json uses substitution variable(s) the CDK app has no value for: "
            + ", ".join(missing)
            + " (add them in cdk_app/stacks/batch_scoring.py)"
        )
    return {name: values[name] for name in sorted(substitution_variables(text))}


class BatchScoringStateMachine(LoggedStateMachine):
    """Plan, a Distributed Map of ScoreChunk over the manifest in `work_bucket`, Finish, Notify."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        machine: MachineSpec,
        manifests: str,
        work_bucket: s3.IBucket,
        map_results_prefix: str,
    ) -> None:
        super().__init__(scope, id, machine=machine)
        text = definition_text(DEFINITION_FILE)
        self.substitutions = batch_substitutions(text, machine.substitutions)
        self._allow_alerts()
        self._allow_distributed_map(machine.name, text)
        self._allow_item_reader_and_result_writer(work_bucket, machine.data_key, manifests, map_results_prefix)
        self._build(
            definition=text,
            wildcard_reason="The Distributed Map's child executions and each run's manifest are named at run time"
            " (execution:<name>/ScoreChunks:*, batch-scoring/work/*/manifest.json), its ResultWriter writes under"
            " its prefix; Resource '*' only for CloudWatch Logs delivery and X-Ray, which have no resource-level"
            " permissions. Every action is named.",
        )

    def _allow_distributed_map(self, name: str, text: str) -> None:
        stack = Stack.of(self)

        def arn(resource: str, resource_name: str) -> str:
            return stack.format_arn(
                service="states",
                resource=resource,
                resource_name=resource_name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )

        label = str(map_state(text)["Label"])
        self._add(["states:StartExecution"], [arn("stateMachine", name)])
        # Child executions are named <state machine>/<map label>:<id>; its own runs <state machine>:<id>.
        executions = [arn("execution", f"{name}/{label}:*"), arn("execution", f"{name}:*")]
        self._add(["states:DescribeExecution", "states:StopExecution"], executions)

    def _allow_item_reader_and_result_writer(
        self, bucket: s3.IBucket, key: kms.IKey, manifests: str, results_prefix: str
    ) -> None:
        self._add(["s3:GetObject"], [bucket.arn_for_objects(manifests)])
        self._add(list(KMS_DECRYPT), [key.key_arn])
        writer_actions = ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"]
        self._add(writer_actions, [bucket.arn_for_objects(f"{results_prefix}/*")])
        self._add(list(KMS_ENCRYPT), [key.key_arn])
