"""The whole app synthesizes offline, passes the cdk-nag packs and cfn-lint, and rejects bad context."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from cdk_app.app import build
from cdk_app.compliance import MIN_REASON_LENGTH, acknowledge, acknowledgments_in, add_nag_packs
from cdk_app.config import ConfigError, parse_config
from tests.infrastructure.conftest import CDK_JSON, Synthesized, cdk_json_context

pytestmark = pytest.mark.infrastructure

NAG_PACKS = {"AwsSolutions", "HIPAA.Security", "Serverless"}
EXPECTED_STACKS = {
    f"clinrisk-dev-{name}"
    for name in ("foundation", "mlflow", "pipeline", "explain", "serving", "batch-scoring", "monitoring")
}


def test_the_app_synthesizes_every_stack(synthesized: Synthesized) -> None:
    print(f"synthesis of the whole app, with the nag packs: {synthesized.seconds:.1f} s")
    assert synthesized.error is None, synthesized.error
    assert set(synthesized.stacks) == EXPECTED_STACKS


def test_nag_packs_leave_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    assert synthesized.nag_findings() == []
    assert synthesized.error is None, synthesized.error


def test_no_cdk_warnings_or_errors(synthesized: Synthesized) -> None:
    assert {name: found for name, found in synthesized.serious_messages().items() if found} == {}


def test_every_acknowledgment_names_a_rule_and_gives_a_reason(synthesized: Synthesized) -> None:
    acknowledged = _acknowledgments(synthesized)
    assert acknowledged, "expected the acknowledgments listed in the README"
    for path, rule, reason in acknowledged:
        pack, _, rule_id = rule.partition("::")
        assert pack in NAG_PACKS and rule_id.startswith(pack + "-"), (path, rule)
        assert len(reason) >= MIN_REASON_LENGTH, (path, rule, reason)


def cfn_lint_errors(synthesized: Synthesized) -> dict[str, list[str]]:
    """cfn-lint errors per stack; warnings and notes are printed, not fatal."""
    errors = {}
    for name, matches in synthesized.cfn_lint_matches().items():
        for match in matches:
            print(f"cfn-lint {name}: {match}")
        errors[name] = [str(m) for m in matches if m.rule.id.startswith("E")]
    return errors


def test_cfn_lint_finds_no_errors(synthesized: Synthesized) -> None:
    errors = cfn_lint_errors(synthesized)
    assert set(errors) == EXPECTED_STACKS
    assert {name: found for name, found in errors.items() if found} == {}


def test_nag_packs_stop_synthesis_of_an_insecure_resource(tmp_path: Any) -> None:
    """The negative control: the three packs are really attached and really fail synthesis."""
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Insecure")
    sns.Topic(stack, "PlainTopic")  # no KMS, no SSL-only policy
    sqs.Queue(stack, "PlainQueue", encryption=sqs.QueueEncryption.UNENCRYPTED)  # no DLQ, no encryption
    add_nag_packs(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    failed = {
        report["pluginName"]
        for report in json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"]
        if report["violations"]
    }
    assert failed == NAG_PACKS


def test_an_empty_reason_is_refused() -> None:
    stack = Stack(App(), "S")
    with pytest.raises(ValueError, match="specific reason"):
        acknowledge(stack, "AwsSolutions-S1", "Not applicable.")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"servingMode": "bogus"}, "servingMode"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        ({"retrainSchedule": "0 3 * * 1"}, "retrainSchedule"),
        ({"gate": {"aucFloor": 1.5}}, "gate.aucFloor"),
        ({"gate": {"aucFlor": 0.7}}, "gate.aucFlor"),
        ({"vpc": "maybe"}, "vpc"),
        ({"env": "Prod Env"}, "env"),
        ({"approvalTimeoutHours": 0}, "approvalTimeoutHours"),
        ({"approvalTimeoutHours": 24 * 7}, "approvalTimeoutHours"),
        ({"managedSpotTraining": "sometimes"}, "managedSpotTraining"),
        ({"tasks": {"stroke": {}}}, "tasks"),  # no tasks/stroke.yaml
        ({"tasks": {}}, "tasks"),
        ({"tasks": {"heart-disease": {"retrainSchedule": "0 5 * * 1"}}}, "tasks.heart-disease.retrainSchedule"),
        ({"tasks": {"heart-disease": {"schedule": "rate(7 days)"}}}, "tasks.heart-disease.schedule"),
    ],
)
def test_bad_context_names_the_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(cdk_json_context(**overrides))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"invalid cdk.json context: {key}:"), message


def test_an_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown task\(s\) stroke: .*known: heart-disease, readmission"):
        parse_config(cdk_json_context(tasks={"stroke": {}}))


HEART_TASK = CDK_JSON.parent / "tasks" / "heart-disease.yaml"
# A bad file beside the shipped heart-disease file, and the file and key synthesis must name.
BAD_TASK_FILES = {
    "not YAML": ("sepsis.yaml", "name: sepsis\ncolumns: [{name: lactate\n", "sepsis.yaml: line 3: not valid YAML"),
    "fails the task model": (
        "heart-disease.yaml",
        HEART_TASK.read_text().replace('positive_if: "> 0"', 'positive_if: "above zero"'),
        "heart-disease.yaml: target.positive_if: ",
    ),
    "a name already used": (
        "heart-copy.yaml",
        HEART_TASK.read_text(),
        "heart-copy.yaml: name: task name 'heart-disease' is also declared by heart-disease.yaml",
    ),
    "no request model": (
        "wide.yaml",
        HEART_TASK.read_text()
        .replace("name: heart-disease", "name: wide", 1)
        .replace("name: chol", "name: model_dump"),
        "wide.yaml: columns: the API's request model cannot be built",
    ),
}


def bad_task_directory(tmp_path: Path, case: str) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    shutil.copy(HEART_TASK, tasks / HEART_TASK.name)
    filename, text, _ = BAD_TASK_FILES[case]
    (tasks / filename).write_text(text)
    return tasks


@pytest.mark.parametrize("case", sorted(BAD_TASK_FILES))
def test_a_bad_task_file_stops_synthesis_with_one_line_naming_the_file_and_the_key(case: str, tmp_path: Path) -> None:
    tasks = bad_task_directory(tmp_path, case)
    with pytest.raises(ConfigError) as raised:
        parse_config(cdk_json_context(), tasks_dir=tasks)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("invalid task file in tasks/: ") and BAD_TASK_FILES[case][2] in message, message
    (tasks / BAD_TASK_FILES[case][0]).unlink()
    shutil.copy(HEART_TASK, tasks / HEART_TASK.name)
    assert parse_config(cdk_json_context(), tasks_dir=tasks).tasks.keys() == {"readmission", "heart-disease"}


_SYNTH_WITH_TASKS = """
import sys
from pathlib import Path
from clinrisk.taskspec import catalogue
catalogue.TASKS_DIR = Path(sys.argv[1])  # the directory the app bundles and checks
from cdk_app.app import main
main()
"""


def test_cdk_synth_prints_one_line_for_a_bad_task_file(tmp_path: Path) -> None:
    """What `cdk synth` shows with a broken file in tasks/ (even one cdk.json does not list): the app stops."""
    tasks = bad_task_directory(tmp_path, "not YAML")
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(cdk_json_context()), "CDK_OUTDIR": str(tmp_path / "out")}
    result = subprocess.run(
        [sys.executable, "-c", _SYNTH_WITH_TASKS, str(tasks)],
        cwd=CDK_JSON.parent, env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "clinrisk: invalid task file in tasks/: sepsis.yaml: line 3: not valid YAML"
    )
    assert not list((tmp_path / "out").glob("*.template.json"))  # no stack was synthesized


def test_cdk_json_context_parses_and_command_line_strings_are_accepted() -> None:
    config = parse_config(
        cdk_json_context(
            vpc="true", gate='{"aucFloor": 0.7}', alarmEmail="", approvalTimeoutHours="48", managedSpotTraining="true"
        )
    )
    assert config.vpc is True
    assert config.approval_timeout_hours == 48
    assert config.managed_spot_training is True
    assert config.gate.auc_floor == 0.7
    assert config.alarm_email is None


def test_a_vpc_with_a_serverless_mlflow_app_stops_synthesis_naming_the_keys() -> None:
    # An MLflow app's API has no VPC endpoint: isolated functions could not reach it.
    app = App(context=cdk_json_context(vpc=True, mlflowFlavour="serverless-app"))
    with pytest.raises(ConfigError, match=r"^invalid cdk\.json context: vpc: .*mlflowFlavour") as raised:
        build(app)
    assert "\n" not in str(raised.value)
    assert [child.node.id for child in app.node.children if isinstance(child, Stack)] == []


def test_the_default_deployment_has_no_network(synthesized: Synthesized) -> None:
    # vpc=false (cdk.json): no VPC, and no function is attached to one.
    for name, stack in synthesized.stacks.items():
        types = {resource["Type"] for resource in stack.template["Resources"].values()}
        assert not {t for t in types if t.startswith("AWS::EC2::")}, name
        for resource in stack.template["Resources"].values():
            if resource["Type"] == "AWS::Lambda::Function":
                assert "VpcConfig" not in resource["Properties"], name


def test_bad_context_stops_the_app_before_any_stack_is_built() -> None:
    app = App(context=cdk_json_context(servingMode="bogus"))
    with pytest.raises(ConfigError, match="servingMode"):
        build(app)
    assert [child.node.id for child in app.node.children if isinstance(child, Stack)] == []


def test_cdk_synth_prints_one_line_for_bad_context() -> None:
    """What `cdk synth -c servingMode=bogus` shows: the CLI passes context in CDK_CONTEXT_JSON."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(cdk_json_context(servingMode="bogus"))}
    result = subprocess.run(
        [sys.executable, "-m", "cdk_app.app"], cwd=CDK_JSON.parent, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("clinrisk: invalid cdk.json context: servingMode:")


def _acknowledgments(synthesized: Synthesized) -> list[tuple[str, str, str]]:
    return acknowledgments_in(synthesized.outdir)
