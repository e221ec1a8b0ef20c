"""The retraining state machine: `state_machines/retraining.asl.json` with DefinitionSubstitutions.

The definition stays the ASL file (validated offline by tests/unit/test_state_machines.py); this
construct fills its `${Name}` placeholders. The placeholders are read from the file itself, so a
variable added to the ASL without a value here stops synthesis with a message naming it, instead of
deploying a definition that Step Functions would reject or, worse, accept with a literal `${...}`.

- STANDARD workflow (the run waits up to days for an approval); TimeoutSeconds comes from the ASL.
- Logging level ALL to a KMS-encrypted log group, *without* execution data: the events (every
  state entered and left, every task scheduled, succeeded, failed or timed out, with error names)
  are what an audit and the alarms need, while the data would copy into a year-long log the
  untrusted execution input (logged before ValidateData has checked it) and the approval task
  token. A run's data stays in its execution history (90 days, IAM-protected).
- X-Ray tracing on.
- Its own role, with every action named: invoke the four stage Lambdas, create/describe/tag
  `clinrisk-*` training jobs and pass the training role to SageMaker only, publish to the alerts
  topic, use the data key for the training volume's grant, plus the log-delivery and X-Ray calls
  that have no resource-level permissions.
- In the VPC variant (`training_vpc`), the Train state's CreateTrainingJob also gets a `VpcConfig`
  (the isolated subnets and the training security group). The ASL file stays as it is, because the
  local interpreter tests run it: the construct adds `VpcConfig` to the parsed definition, with
  `${TrainingSubnet<i>}` / `${TrainingSecurityGroup<i>}` placeholders filled by substitution, and
  the role may create training jobs only with exactly those subnets and groups.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from cdk_app.constructs.logged_state_machine import LoggedStateMachine, MachineSpec
from cdk_app.state_machine import definition_text, substitution_variables

TRAINING_JOB_PREFIX = "clinrisk-"  # the Train state names jobs clinrisk-<run id>
TRAIN_STATE = "Train"


class DefinitionOutOfSyncError(ValueError):
    """The ASL names a substitution variable that the CDK app gives no value."""


def definition_substitutions(text: str, values: Mapping[str, str]) -> dict[str, str]:
    """The values for exactly the variables `text` uses; raises if one has none."""
    used = substitution_variables(text)
    missing = sorted(used - set(values))
    if missing:
        raise DefinitionOutOfSyncError(
            "state_machines/retraining.asl.json uses substitution variable(s) the CDK app has no value for: "
            + ", ".join(missing)
            + " (add them in cdk_app/stacks/pipeline.py)"
        )
    return {name: values[name] for name in sorted(used)}


@dataclass(frozen=True)
class TrainingVpc:
    """Where the training job's network interfaces go (subnet and security group ids, tokens at synth)."""

    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]

    def _names(self) -> tuple[list[str], list[str]]:
        subnets = [f"TrainingSubnet{index}" for index in range(len(self.subnet_ids))]
        groups = [f"TrainingSecurityGroup{index}" for index in range(len(self.security_group_ids))]
        return subnets, groups

    def vpc_config(self) -> dict[str, list[str]]:
        """CreateTrainingJob's VpcConfig, in placeholders."""
        subnets, groups = self._names()
        return {"Subnets": [f"${{{n}}}" for n in subnets], "SecurityGroupIds": [f"${{{n}}}" for n in groups]}

    def substitutions(self) -> dict[str, str]:
        subnets, groups = self._names()
        return dict(zip([*subnets, *groups], [*self.subnet_ids, *self.security_group_ids], strict=True))


def with_training_vpc(text: str, vpc: TrainingVpc) -> str:
    """The definition with a VpcConfig on the Train state's request (placeholders, filled by substitution)."""
    definition = json.loads(text)
    parameters = definition["States"][TRAIN_STATE]["Parameters"]
    if "VpcConfig" in parameters or "VpcConfig.$" in parameters:
        raise DefinitionOutOfSyncError("state_machines/retraining.asl.json already sets the Train state's VpcConfig")
    parameters["VpcConfig"] = vpc.vpc_config()
    return json.dumps(definition, indent=2)


class RetrainingStateMachine(LoggedStateMachine):
    """Validate, Train (a SageMaker training job run as `training_role`), Evaluate, the approval, Promote."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        machine: MachineSpec,
        training_role: iam.IRole,
        training_vpc: TrainingVpc | None = None,
    ) -> None:
        super().__init__(scope, id, machine=machine)
        text = definition_text()
        substitutions = machine.substitutions
        if training_vpc is not None:
            text = with_training_vpc(text, training_vpc)
            substitutions = {**substitutions, **training_vpc.substitutions()}
        self.substitutions = definition_substitutions(text, substitutions)
        self._allow_tasks(machine.data_key)
        self._allow_training(training_role, training_vpc)
        self._build(
            definition=text,
            wildcard_reason="Resource '*' only where the API has no resource-level permissions (CloudWatch Logs"
            " delivery for the state machine's own logging, X-Ray); training jobs are clinrisk-* because each run"
            " names its job after its run id. Every action is named.",
        )

    def _allow_tasks(self, data_key: kms.IKey) -> None:
        # CreateTrainingJob with VolumeKmsKeyId: SageMaker creates the volume's grant as the caller.
        self._add(["kms:CreateGrant"], [data_key.key_arn], {"Bool": {"kms:GrantIsForAWSResource": "true"}})
        self._add(["kms:DescribeKey"], [data_key.key_arn])
        self._allow_alerts()

    def _allow_training(self, training_role: iam.IRole, vpc: TrainingVpc | None) -> None:
        stack = Stack.of(self)
        jobs = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:training-job/{TRAINING_JOB_PREFIX}*"
        if vpc is None:
            self._add(["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:AddTags"], [jobs])
        else:
            self._add(["sagemaker:DescribeTrainingJob", "sagemaker:AddTags"], [jobs])
            # Only jobs in exactly these subnets and groups; Null: false, because ForAllValues alone
            # also holds for a request without any VpcConfig.
            only_these = {
                "ForAllValues:StringEquals": {
                    "sagemaker:VpcSubnets": list(vpc.subnet_ids),
                    "sagemaker:VpcSecurityGroupIds": list(vpc.security_group_ids),
                },
                "Null": {"sagemaker:VpcSubnets": "false", "sagemaker:VpcSecurityGroupIds": "false"},
            }
            self._add(["sagemaker:CreateTrainingJob"], [jobs], only_these)
        self._add(
            ["iam:PassRole"],
            [training_role.role_arn],
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
