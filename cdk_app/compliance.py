"""The compliance checks (cdk-nag packs) and the one way to acknowledge a finding."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, ServerlessChecks
from constructs import IConstruct

# Reasons that explain nothing; an acknowledgment must say why the rule does not fit here.
EMPTY_REASONS = frozenset({"", "n/a", "na", "not applicable", "not needed", "ignore", "todo"})
MIN_REASON_LENGTH = 40


def add_nag_packs(app: App) -> None:
    """cdk-nag 3 packs are CDK policy-validation plugins: an unacknowledged finding stops synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app), ServerlessChecks(app))


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge cdk-nag `rule` (e.g. "HIPAA.Security-S3BucketReplicationEnabled") on `construct` and its children.

    The pack is the part of the rule id before the first "-", as cdk-nag names it in its report.
    """
    if reason.strip().lower().rstrip(".") in EMPTY_REASONS or len(reason) < MIN_REASON_LENGTH:
        raise ValueError(f"acknowledgment of {rule} needs a specific reason, got {reason!r}")
    pack = rule.split("-", 1)[0]
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{pack}::{rule}", reason=reason))


def acknowledgments_in(assembly_dir: Path) -> list[tuple[str, str, str]]:
    """(construct path, rule, reason) of every acknowledgment in a synthesized cloud assembly.

    Read from the stacks' metadata files: jsii cannot deserialize these entries from
    `find_metadata_by_type`.
    """
    found = []
    for metadata_file in sorted(assembly_dir.glob("*.metadata.json")):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry["type"] == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                    found += [(path, rule, reason) for rule, reason in entry["data"].items()]
    return found


def main() -> None:
    """`python -m cdk_app.compliance [cdk.out]`: every acknowledged finding as a Markdown table."""
    assembly_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")
    print("| rule | where | why |\n|---|---|---|")  # noqa: T201
    for path, rule, reason in acknowledgments_in(assembly_dir):
        print(f"| `{rule.partition('::')[2]}` | `{path}` | {reason} |")  # noqa: T201


if __name__ == "__main__":
    main()
