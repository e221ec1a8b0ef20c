"""The monitor, the outcomes intake and the alarm notices as synthesized: one container image (staged,
not built: synthesis needs no Docker), the monitor's schedule from cdk.json, the outcome files' route
(S3 via EventBridge → KMS queue with a dead-letter queue and its alarm → partial batch failures)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infrastructure.conftest import CDK_JSON, Synthesized

pytestmark = pytest.mark.infrastructure

MONITORING = "clinrisk-dev-monitoring"


def _of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r.get("Properties", {}) for lid, r in template["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def template(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.stacks[MONITORING].template


def test_three_functions_run_from_one_staged_image(synthesized: Synthesized, template: dict[str, Any]) -> None:
    commands = {
        props["ImageConfig"]["Command"][0]
        for props in _of(template, "AWS::Lambda::Function").values()
        if props.get("PackageType") == "Image"
    }
    assert commands == {"lambdas.monitor.handler.handler", "lambdas.outcomes.handler.handler",
                        "lambdas.alarm_notice.handler.handler"}  # fmt: skip
    manifest = json.loads((synthesized.outdir / "Monitoring.assets.json").read_text())
    [image] = manifest["dockerImages"].values()
    context = synthesized.outdir / image["source"]["directory"]
    assert image["source"].get("platform") == "linux/amd64"
    assert (context / "Dockerfile").is_file() and (context / "requirements.lock").is_file()
    assert not (context / "clinrisk" / "local").exists()


def test_the_monitor_runs_on_the_cdk_json_schedule(template: dict[str, Any]) -> None:
    schedule = json.loads(CDK_JSON.read_text())["context"]["monitorSchedule"]
    rules = [p for lid, p in _of(template, "AWS::Events::Rule").items() if lid.startswith("MonitorSchedule")]
    assert [r["ScheduleExpression"] for r in rules] == [schedule]


def test_outcome_files_reach_a_kms_queue_with_a_dead_letter_queue_and_an_alarm(template: dict[str, Any]) -> None:
    [rule] = [p for lid, p in _of(template, "AWS::Events::Rule").items() if lid.startswith("OutcomesOutcomeFile")]
    assert rule["EventPattern"]["detail-type"] == ["Object Created"]
    assert rule["EventPattern"]["detail"]["object"] == {"key": [{"prefix": "outcomes/"}]}
    [target] = rule["Targets"]
    assert "DeadLetterConfig" in target
    queues = {  # the outcome queue and its dead-letter queue (not the function's own, for async failures)
        lid: p for lid, p in _of(template, "AWS::SQS::Queue").items()
        if lid.startswith("Outcomes") and not lid.startswith("OutcomesFunction")
    }  # fmt: skip
    assert len(queues) == 2 and all("KmsMasterKeyId" in p for p in queues.values())
    [main] = [p for p in queues.values() if "RedrivePolicy" in p]
    assert main["RedrivePolicy"]["maxReceiveCount"] == 3
    [mapping] = _of(template, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    dead = [p for lid, p in _of(template, "AWS::CloudWatch::Alarm").items() if lid.startswith("OutcomesDeadLetters")]
    assert len(dead) == 1 and dead[0]["MetricName"] == "ApproximateNumberOfMessagesVisible"


def test_the_data_bucket_sends_its_events_to_eventbridge(synthesized: Synthesized) -> None:
    template = synthesized.stacks["clinrisk-dev-foundation"].template
    buckets = [p for lid, p in _of(template, "AWS::S3::Bucket").items() if lid.startswith("BucketsData")]
    assert buckets[0]["NotificationConfiguration"]["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}
