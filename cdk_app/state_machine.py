"""The retraining state machine's definition (`state_machines/retraining.asl.json`) as data.

One table maps each state to the local pipeline's stage (`clinrisk.pipeline.local.STAGES`), so the
tests, the CDK app and the local runner agree on which state is which stage. The definition
carries `${Name}` placeholders that the CDK fills with DefinitionSubstitutions; the helpers
here list and fill them the same way (plain text replacement), so a test can validate exactly
what CloudFormation will hand to Step Functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFINITION_FILE = Path(__file__).resolve().parent.parent / "state_machines" / "retraining.asl.json"

# Placeholder syntax of CloudFormation DefinitionSubstitutions.
SUBSTITUTION_PATTERN = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")

# Every state → the pipeline stage it belongs to. Approval is a second, human gate, so it is
# part of "gate"; every notification state (and the terminal Fail) is part of "notify". The
# training job is started, then polled (WaitForTraining → CheckTraining → TrainingStatus, the
# machine's one loop) until it ends, so all of those are "train".
STATE_STAGES: dict[str, str] = {
    "PrepareRun": "validate",
    "ValidateData": "validate",
    "TrainingCapacity": "train",
    "SpotCapacity": "train",
    "OnDemandCapacity": "train",
    "Train": "train",
    "WaitForTraining": "train",
    "CheckTraining": "train",
    "TrainingStatus": "train",
    "TrainingFailed": "train",
    "Evaluate": "evaluate",
    "Gate": "gate",
    "ApprovalRequired": "gate",
    "RequestApproval": "gate",
    "Promote": "promote",
    "Notify": "notify",
    "NotifyRejected": "notify",
    "NotifyNotApproved": "notify",
    "NotifyFailed": "notify",
    "Failed": "notify",
}

# The polling loop: the only cycle in the graph, left through TrainingStatus once the job ends.
POLLING_LOOP = frozenset({"WaitForTraining", "CheckTraining", "TrainingStatus"})


class MissingSubstitutionError(KeyError):
    """The definition names a `${Name}` that no value was given for."""


def definition_text(path: Path = DEFINITION_FILE) -> str:
    return path.read_text(encoding="utf-8")


def substitution_variables(text: str) -> set[str]:
    """The `${Name}` placeholders in a definition."""
    return set(SUBSTITUTION_PATTERN.findall(text))


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder as CloudFormation does: text replacement, values inserted as is."""
    missing = sorted(substitution_variables(text) - set(values))
    if missing:
        raise MissingSubstitutionError(f"no value for substitution variable(s): {', '.join(missing)}")
    return SUBSTITUTION_PATTERN.sub(lambda match: values[match.group(1)], text)


def load_definition(values: Mapping[str, str], path: Path = DEFINITION_FILE) -> dict[str, Any]:
    """The definition after substitution, parsed."""
    definition: dict[str, Any] = json.loads(substitute(definition_text(path), values))
    return definition


def training_source_substitutions(bucket: str, key: str) -> dict[str, str]:
    """`TrainingSourceUri` and `TrainingSourceFileName` for the source tarball at s3://bucket/key.

    With network isolation the tarball reaches the container as the `code` channel, where it is
    `/opt/ml/input/data/code/<last segment of key>`. `key` must be a literal string (a CDK file
    asset's object key is), since the last segment is computed here, at synth time.
    """
    return {"TrainingSourceUri": f"s3://{bucket}/{key}", "TrainingSourceFileName": key.rsplit("/", 1)[-1]}


def execution_timeout_seconds(path: Path = DEFINITION_FILE) -> int:
    """The machine-wide TimeoutSeconds; the CDK app checks its timeouts fit inside it."""
    return int(json.loads(definition_text(path))["TimeoutSeconds"])
