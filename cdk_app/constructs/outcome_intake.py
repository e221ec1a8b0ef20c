"""Outcome files: a CSV put under `outcomes/` in the data bucket → an EventBridge event (the data
bucket sends its events to EventBridge) → an SQS queue (KMS) → the outcomes function, which keys
each file's ids and stores it under the capture bucket's keyed-outcomes prefix.

Why EventBridge between S3 and SQS: the data bucket lives in the Foundation stack and the queue
here; a bucket notification pointing at this stack's queue would make Foundation depend on
Monitoring, which depends on Foundation. An EventBridge rule here only names the bucket. Its
events carry the object key as written (S3's own notifications URL-encode it).

The function reports each failed message back (partial batch failures), so one bad file does not
retry its batch's good ones; a message that fails `MAX_RECEIVES` times moves to the dead-letter
queue, where an alarm notifies the alerts topic.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.image_functions import FunctionSizing, ImageFunctions
from cdk_app.constructs.prediction_capture import KEYED_OUTCOMES_PREFIX, PredictionCapture
from cdk_app.constructs.python_function import PythonFunction, acknowledge_function_findings
from cdk_app.constructs.redriven_queue import redriven_queue
from cdk_app.environment import backend_environment, settings_environment
from cdk_app.monitoring_image import OUTCOMES_HANDLER
from cdk_app.permissions import KMS_DECRYPT, allow_read_objects, allow_write_objects
from clinrisk.settings import Settings

OUTCOMES_PREFIX = "outcomes/"
MAX_RECEIVES = 3
BATCH_SIZE = 5
# Outcome files come a few a day; two at once keep a backlog moving.
SIZING = FunctionSizing(memory_size=2048, timeout=Duration.minutes(5), reserved_concurrency=2)
# Lambda's guidance for an SQS event source: a visibility timeout of six times the function's timeout.
VISIBILITY_TIMEOUT = Duration.minutes(30)


class OutcomeIntake(Construct):
    function: PythonFunction
    queue: sqs.Queue
    dead_letters: sqs.Queue
    rule: events.Rule
    dead_letter_alarm: cloudwatch.Alarm

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        functions: ImageFunctions,
        data_bucket: s3.IBucket,
        capture: PredictionCapture,
        artifacts_bucket: s3.IBucket,
        alerts: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        queue_key = kms.Key(
            self, "QueueKey", enable_key_rotation=True, description="clinrisk: the outcome-file event queues"
        )
        # EventBridge encrypts what it sends to the queue with the queue's key.
        queue_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" means this key
            )
        )
        self.queue, self.dead_letters = redriven_queue(
            self, key=queue_key, visibility_timeout=VISIBILITY_TIMEOUT, max_receives=MAX_RECEIVES, owner="outcome"
        )
        self.rule = events.Rule(
            self,
            "OutcomeFileCreated",
            description="clinrisk: an outcomes CSV put under outcomes/ in the data bucket",
            event_pattern=outcome_file_pattern(data_bucket.bucket_name),
        )
        # An event EventBridge cannot deliver lands in the dead-letter queue too, where the alarm sees it.
        self.rule.add_target(targets.SqsQueue(self.queue, dead_letter_queue=self.dead_letters))
        self.function = self._function(functions, artifacts_bucket=artifacts_bucket, capture=capture)
        allow_read_objects(self.function.function, data_bucket, key=functions.data_key, prefixes=(OUTCOMES_PREFIX,))
        allow_write_objects(self.function.function, capture.bucket, key=capture.key, prefixes=(KEYED_OUTCOMES_PREFIX,))
        for actions_, resource in (
            (["secretsmanager:GetSecretValue"], capture.id_key.secret_arn),
            (list(KMS_DECRYPT), capture.key.key_arn),
        ):
            self.function.role.add_to_policy(iam.PolicyStatement(actions=actions_, resources=[resource]))
        self.function.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                         "sqs:GetQueueAttributes"],
                resources=[self.queue.queue_arn],
            )
        )  # fmt: skip
        self.function.role.add_to_policy(iam.PolicyStatement(actions=["kms:Decrypt"], resources=[queue_key.key_arn]))
        mapping = self.function.function.add_event_source_mapping(
            "OutcomeEvents",
            event_source_arn=self.queue.queue_arn,
            batch_size=BATCH_SIZE,
            report_batch_item_failures=True,
        )
        acknowledge(
            mapping,
            "Serverless-LambdaEventSourceMappingDestination",
            "An SQS event source has no on-failure destination in Lambda (that is for streams); a message that"
            " keeps failing moves to the outcome queue's dead-letter queue through its redrive policy, alarmed.",
        )
        self.dead_letter_alarm = self._dead_letter_alarm(name, alerts)
        self._acknowledge()

    def _function(
        self, functions: ImageFunctions, *, artifacts_bucket: s3.IBucket, capture: PredictionCapture
    ) -> PythonFunction:
        environment = backend_environment(artifacts_bucket=artifacts_bucket.bucket_name) | settings_environment(
            Settings,
            monitoring__capture_bucket=capture.bucket.bucket_name,
            monitoring__id_key_secret_arn=capture.id_key.secret_arn,
        )
        return functions.function(
            self,
            handler=OUTCOMES_HANDLER,
            description="clinrisk outcomes intake: keys an outcomes CSV's ids and stores it beside the captures",
            environment=environment,
            sizing=SIZING,
        )

    def _dead_letter_alarm(self, name: str, alerts: sns.ITopic) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_name=f"{name}-outcomes-dead-letters",
            alarm_description="Outcome files failed their intake 3 times and wait in the dead-letter queue"
            " (the function's log names the file and the bad rows by number).",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(alerts))
        alarm.add_ok_action(actions.SnsAction(alerts))
        return alarm

    def _acknowledge(self) -> None:
        acknowledge_function_findings(
            {
                self.function: "The intake GETs the outcome files under outcomes/ (names chosen by whoever drops them)"
                " and PUTs keyed files under outcomes-keyed/task=<task>/ (names made per file), so object ARNs end in"
                " a prefix wildcard. X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level"
                " permissions, so tracing needs Resource '*'."
            }
        )


def outcome_file_pattern(bucket_name: str) -> events.EventPattern:
    """An object created under outcomes/ in the data bucket (the bucket sends its events to EventBridge)."""
    return events.EventPattern(
        source=["aws.s3"],
        detail_type=["Object Created"],
        detail={"bucket": {"name": [bucket_name]}, "object": {"key": [{"prefix": OUTCOMES_PREFIX}]}},
    )
