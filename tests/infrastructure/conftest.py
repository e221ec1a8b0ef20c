"""One synthesis of the whole CDK app per test run, with the context of cdk.json.

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
from clinrisk.packaging import build_cached_bundle, function_specs

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"
ALARM_EMAIL = "ops@example.org"
FAILURE_FILE = "synth-error.txt"


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

    def validation_report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.outdir / "validation-report.json").read_text())
        return report


def build_bundles() -> None:
    """What `make build` does (pip only when a lock changed): the app deploys the bundles' current sources."""
    repo_root = CDK_JSON.parent
    for spec in function_specs(repo_root).values():
        build_cached_bundle(spec, repo_root)


def synthesize(outdir: Path) -> Synthesized:
    build_bundles()
    started = time.perf_counter()
    app = App(context=cdk_json_context(alarmEmail=ALARM_EMAIL), outdir=str(outdir))
    build(app)
    try:
        app.synth()
    except RuntimeError as error:  # jsii surfaces the JavaScript ValidationFailed as RuntimeError
        (outdir / FAILURE_FILE).write_text(str(error))
        return Synthesized(outdir, time.perf_counter() - started, str(error))
    return Synthesized(outdir, time.perf_counter() - started, None)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    outdir = shared / "clinrisk-cdk.out"
    with FileLock(str(shared / "clinrisk-cdk.lock")):
        if not outdir.exists():
            outdir.mkdir()
            return synthesize(outdir)
    failure = outdir / FAILURE_FILE
    return Synthesized(outdir, 0.0, failure.read_text() if failure.exists() else None)
