"""Alarm notices: a model alarm's state change (CloudWatch's EventBridge event) becomes one SNS message
whose subject names the task, the metric and the model version that CloudWatch says breached."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.stub import ANY, Stubber  # type: ignore[import-untyped]
from moto import mock_aws

from clinrisk.adapters.aws import SnsNotifier
from clinrisk.monitoring.notices import AlarmStateChange, WatchedMetric, send_notice
from tests.aws_events import REGION, alarm_state_change

ALARMS = {
    "clinrisk-dev-model-readmission-score-drift": WatchedMetric(task="readmission", metric="ScoreDrift", worst="MAX"),
    "clinrisk-dev-model-readmission-realized-auc": WatchedMetric(task="readmission", metric="RealizedAUC", worst="MIN"),
}


def _cloudwatch(query: str, label: str | None) -> tuple[Any, Stubber]:
    client = boto3.client("cloudwatch", region_name=REGION)
    stubber = Stubber(client)
    results = [{"Id": "version", "Label": label, "Timestamps": [datetime(2027, 1, 15, 10)], "Values": [0.4],
                "StatusCode": "Complete"}] if label else []  # fmt: skip
    stubber.add_response(
        "get_metric_data",
        {"MetricDataResults": results},
        {"MetricDataQueries": [{"Id": "version", "Expression": query, "Period": 3600, "ReturnData": True}],
         "StartTime": ANY, "EndTime": ANY},
    )  # fmt: skip
    return client, stubber


@mock_aws
@pytest.mark.parametrize(
    ("alarm", "state", "label", "subject"),
    [
        ("clinrisk-dev-model-readmission-score-drift", "ALARM", "4", "clinrisk ALARM: readmission ScoreDrift model v4"),
        ("clinrisk-dev-model-readmission-realized-auc", "OK", "3", "clinrisk OK: readmission RealizedAUC model v3"),
        ("clinrisk-dev-model-readmission-score-drift", "ALARM", None,
         "clinrisk ALARM: readmission ScoreDrift model version unknown"),
    ],
)  # fmt: skip
def test_a_state_change_is_sent_with_task_metric_and_version(
    alarm: str, state: str, label: str | None, subject: str
) -> None:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    cloudwatch, stubber = _cloudwatch(ALARMS[alarm].query(by_version=True), label)
    change = AlarmStateChange.model_validate(
        alarm_state_change(alarm, state=state, previous="OK" if state == "ALARM" else "ALARM")
    )
    with stubber:
        sent = send_notice(change, ALARMS, cloudwatch=cloudwatch, notifier=SnsNotifier(topic, client=sns))
    stubber.assert_no_pending_responses()
    assert sent == subject
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"] == subject
    assert json.loads(envelope["Message"])["model_version"] == label


def test_the_version_query_is_the_alarms_query_grouped_by_version() -> None:
    auc = ALARMS["clinrisk-dev-model-readmission-realized-auc"]
    assert auc.query() == (
        """SELECT MIN("RealizedAUC") FROM SCHEMA("clinrisk", model_version, task) WHERE task = 'readmission'"""
    )
    assert auc.query(by_version=True) == auc.query() + " GROUP BY model_version ORDER BY MIN() ASC LIMIT 1"


def test_an_alarm_that_is_not_a_model_alarm_sends_nothing() -> None:
    change = AlarmStateChange.model_validate(alarm_state_change("someone-elses-alarm", state="ALARM", previous="OK"))
    assert send_notice(change, ALARMS, cloudwatch=None, notifier=None) is None  # type: ignore[arg-type]
