"""One synthesis of the whole CDK app per test run, with the context of cdk.json, and one of the variant
that turns on every non-default option (`synthesized_variant`: vpc, servingMode=sagemaker, approvals,
every function's reserved concurrency, and the account's own API Gateway logging role).

Offline: environment-agnostic stacks need no AWS credentials, and nothing here bundles with Docker.
Under pytest-xdist every worker would synthesize again (and `--dist loadgroup` does not group tests
with this pytest/xdist pair), so the first worker writes the cloud assembly into the run's shared
temporary folder under a file lock and the others read it. Tests read the assembly on disk, which
is exactly what `cdk deploy` would deploy.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, cx_api
from aws_cdk.assertions import Template
from filelock import FileLock

from cdk_app.app import build
from cdk_app.bundling import build_cached_bundle, function_specs

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"
ALARM_EMAIL = "ops@example.org"
FAILURE_FILE = "synth-error.txt"
# Every option whose default leaves resources out, in one more synthesis.
VARIANT_CONTEXT: dict[str, Any] = {
    "vpc": True,
    "servingMode": "sagemaker",
    "approvalRequired": True,
    "alarmEmail": ALARM_EMAIL,
    "reservedConcurrency": "all",
    "apiGatewayAccountRole": False,
}


def cdk_json_context(**overrides: Any) -> dict[str, Any]:
    """The context `cdk synth` would pass, from cdk.json itself so the tests cannot drift from it."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return {**context, **overrides}


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    seconds: float  # 0.0 on the workers that read another worker's assembly
    error: str | None  # synthesis stops with the validation report when a nag pack finds something

    @property
    def assembly(self) -> cx_api.CloudAssembly:
        if self.error:
            pytest.fail(f"synthesis failed: {self.error}")
        return cx_api.CloudAssembly(str(self.outdir))

    @property
    def stacks(self) -> dict[str, cx_api.CloudFormationStackArtifact]:
        return {stack.stack_name: stack for stack in self.assembly.stacks}

    def template(self, stack_name: str) -> Template:
        return Template.from_json(self.stacks[stack_name].template)

    def serious_messages(self) -> dict[str, list[str]]:
        """CDK's warnings and errors, by stack (a deprecated API, an unresolvable reference, ...)."""
        serious = (cx_api.SynthesisMessageLevel.ERROR, cx_api.SynthesisMessageLevel.WARNING)
        return {
            stack.stack_name: [
                f"{message.level.value} at {message.id}: {message.entry.data}"
                for message in stack.messages
                if message.level in serious
            ]
            for stack in self.assembly.stacks
        }

    def validation_report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.outdir / "validation-report.json").read_text())
        return report

    def nag_findings(self) -> list[str]:
        """Every unacknowledged cdk-nag finding of the synthesis, one line each."""
        return [
            f"{report['pluginName']}: {violation['severity']} {violation['ruleName']} at "
            + ", ".join(construct["constructPath"] for construct in violation["violatingConstructs"])
            for report in self.validation_report()["pluginReports"]
            for violation in report["violations"]
        ]

    def cfn_lint_matches(self) -> dict[str, list[Any]]:
        """cfn-lint's matches (errors, warnings, notes) per stack."""
        from cfnlint.api import lint

        return {name: lint(json.dumps(stack.template)) for name, stack in self.stacks.items()}


def build_bundles() -> None:
    """What `make build` does (pip only when a lock changed): the app deploys the bundles' current sources."""
    repo_root = CDK_JSON.parent
    for spec in function_specs(repo_root).values():
        build_cached_bundle(spec, repo_root)


def synthesize(outdir: Path, **context: Any) -> Synthesized:
    build_bundles()
    started = time.perf_counter()
    app = App(context=cdk_json_context(**{"alarmEmail": ALARM_EMAIL, **context}), outdir=str(outdir))
    build(app)
    try:
        app.synth()
    except RuntimeError as error:  # jsii surfaces the JavaScript ValidationFailed as RuntimeError
        (outdir / FAILURE_FILE).write_text(str(error))
        return Synthesized(outdir, time.perf_counter() - started, str(error))
    return Synthesized(outdir, time.perf_counter() - started, None)


def synthesized_once(tmp_path_factory: pytest.TempPathFactory, name: str, **context: Any) -> Synthesized:
    """The assembly `name`, synthesized by the first worker that asks (under a file lock) and read by the others."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    outdir = shared / f"{name}.out"
    with FileLock(str(shared / f"{name}.lock")):
        if not outdir.exists():
            outdir.mkdir()
            return synthesize(outdir, **context)
    failure = outdir / FAILURE_FILE
    return Synthesized(outdir, 0.0, failure.read_text() if failure.exists() else None)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesized_once(tmp_path_factory, "clinrisk-cdk")


@pytest.fixture(scope="session")
def synthesized_variant(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """vpc, servingMode=sagemaker and approvals on: one more synthesis covers every non-default option."""
    return synthesized_once(tmp_path_factory, "clinrisk-cdk-variant", **VARIANT_CONTEXT)
