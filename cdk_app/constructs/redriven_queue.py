"""A KMS-encrypted SQS queue whose messages move to a dead-letter queue after `max_receives` failed receives.

The dead-letter queue keeps them 14 days, where the owner's alarm sees them; it has no dead-letter queue
of its own (acknowledged), since one behind it would only move the same failed messages once more.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.compliance import acknowledge

DEAD_LETTER_RETENTION = Duration.days(14)


def redriven_queue(
    scope: Construct,
    *,
    key: kms.IKey,
    visibility_timeout: Duration,
    max_receives: int,
    owner: str,
    messages: str = "events",
) -> tuple[sqs.Queue, sqs.Queue]:
    """(`Queue`, `DeadLetters`) in `scope`; `owner` and `messages` name them in the acknowledgment's reason."""
    dead_letters = _queue(scope, "DeadLetters", key, retention_period=DEAD_LETTER_RETENTION)
    queue = _queue(
        scope,
        "Queue",
        key,
        visibility_timeout=visibility_timeout,
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=max_receives),
    )
    for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
        acknowledge(
            dead_letters,
            rule,
            f"This queue is the {owner} queue's dead-letter queue, watched by an alarm; a dead-letter queue"
            f" behind it would only move the same failed {messages} once more.",
        )
    return queue, dead_letters


def _queue(scope: Construct, id: str, key: kms.IKey, **props: Any) -> sqs.Queue:
    return sqs.Queue(
        scope, id, encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True, **props
    )
