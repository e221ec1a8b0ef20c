"""A model alarm's state change (EventBridge, "CloudWatch Alarm State Change") → one message to the
alerts topic with a subject naming the task, the metric and the model version
(`clinrisk.monitoring.notices.send_notice`)."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from clinrisk.adapters.aws import SnsNotifier
from clinrisk.monitoring.notices import AlarmStateChange, NoticeSettings, send_notice

logger = Logger(service="clinrisk-alarm-notice")


@functools.cache
def _ports() -> tuple[NoticeSettings, Any, SnsNotifier]:
    import boto3  # type: ignore[import-untyped, unused-ignore]

    settings = NoticeSettings()  # from the environment (CLINRISK_NOTICE_*)
    return settings, boto3.client("cloudwatch"), SnsNotifier(settings.topic_arn, client=boto3.client("sns"))


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings, cloudwatch, notifier = _ports()
    change = AlarmStateChange.model_validate(event)
    subject = send_notice(change, settings.alarms, cloudwatch=cloudwatch, notifier=notifier)
    logger.info("notice", extra={"subject": subject})
    return {"subject": subject}
