"""The SNS topics: operational alerts and model-approval requests."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.compliance import acknowledge


class Topics(Construct):
    """KMS-encrypted, SSL-only topics; `alarm_email`, when given, is subscribed to both."""

    alerts: sns.Topic
    approvals: sns.Topic
    undelivered: sqs.Queue | None

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey, alarm_email: str | None) -> None:
        super().__init__(scope, id)
        self.alerts = self._topic("Alerts", "clinrisk alerts: alarms, failed runs, drift", key=key)
        self.approvals = self._topic("Approvals", "clinrisk model approval requests", key=key)
        self.undelivered = None
        if alarm_email:
            self.undelivered = self._undelivered_queue(key)
            # Until approvers get their own setting, the on-call address receives approval requests too.
            for topic in (self.alerts, self.approvals):
                topic.add_subscription(subscriptions.EmailSubscription(alarm_email, dead_letter_queue=self.undelivered))

    def _undelivered_queue(self, key: kms.IKey) -> sqs.Queue:
        # A notification SNS cannot deliver (e.g. the address unsubscribed) lands here instead of
        # vanishing, so a missed approval request or alarm can still be found and replayed.
        queue = sqs.Queue(
            self,
            "Undelivered",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        # cdk-nag recognises a dead-letter queue only through an SQS redrive policy, not through the
        # RedrivePolicy of an SNS subscription, which is how this queue is used.
        for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
            acknowledge(
                queue,
                rule,
                "This queue is itself the dead-letter queue of the e-mail subscriptions (their SNS RedrivePolicy);"
                " a dead-letter queue behind it would only move the same undeliverable messages again.",
            )
        return queue

    def _topic(self, id: str, display_name: str, *, key: kms.IKey) -> sns.Topic:
        return sns.Topic(self, id, display_name=display_name, master_key=key, enforce_ssl=True)
