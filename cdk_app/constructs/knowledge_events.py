"""Knowledge bucket events: an object put into or removed from the knowledge bucket → an SQS message.

The queue (and its dead-letter queue) are encrypted with the data key, which S3 may use to send to
them; a message the ingest function fails `MAX_RECEIVES` times moves to the dead-letter queue,
where an alarm sees it. The notification is set on the bucket's CloudFormation resource: the CDK's
notification helper adds a custom-resource Lambda, and the bucket's fixed name lets the queue
policy name it without a circular reference.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.constructs.buckets import Buckets
from cdk_app.constructs.redriven_queue import redriven_queue

MAX_RECEIVES = 5
# Lambda's guidance for an SQS event source: a visibility timeout of six times the function's timeout.
VISIBILITY_TIMEOUT = Duration.minutes(6)
EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")


class KnowledgeEvents(Construct):
    queue: sqs.Queue
    dead_letters: sqs.Queue

    def __init__(self, scope: Construct, id: str, *, buckets: Buckets, key: kms.Key) -> None:
        super().__init__(scope, id)
        bucket, bucket_name = buckets.knowledge, buckets.knowledge_bucket_name
        self.queue, self.dead_letters = redriven_queue(
            self,
            key=key,
            visibility_timeout=VISIBILITY_TIMEOUT,
            max_receives=MAX_RECEIVES,
            owner="knowledge",
            messages="S3 events",
        )
        stack = Stack.of(self)
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": f"arn:{stack.partition}:s3:::{bucket_name}"},
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowS3ToSendKnowledgeEventsToTheEncryptedQueue",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self._notify(bucket)

    def _notify(self, bucket: s3.Bucket) -> None:
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            queue_configurations=[
                s3.CfnBucket.QueueConfigurationProperty(event=event, queue=self.queue.queue_arn) for event in EVENTS
            ]
        )
        # S3 checks it may send to the queue when the notification is set: the queue policy comes first.
        policy = self.queue.node.try_find_child("Policy")
        if policy is not None:
            cfn_bucket.node.add_dependency(policy)
