"""The scheduled monitor: an EventBridge schedule (`monitorSchedule`, hourly by default) runs the monitor
function from the monitoring image, which reads the window's captures (and keyed outcomes) from the
capture bucket and each served version's monitoring reference from the artifacts bucket, and writes
the metrics as EMF lines to its own log group, from which CloudWatch extracts them. So `FeatureDrift`
(the retraining trigger's metric, under `Environment`) has its producer here.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_app.constructs.predict_service import SERVING_PREFIXES
from cdk_app.constructs.prediction_capture import CAPTURE_PREFIX, KEYED_OUTCOMES_PREFIX, PredictionCapture
from cdk_app.constructs.python_function import FunctionNetwork, PythonFunction, acknowledge_function_findings
from cdk_app.environment import backend_environment, settings_environment
from cdk_app.monitoring_image import MONITOR_HANDLER
from cdk_app.permissions import allow_read_objects
from clinrisk.settings import Settings

# A million captured records took 7.6 s and 0.86 GiB locally (benchmarks/monitoring.py); the downloads
# from S3 come on top, so the function has room for both.
MEMORY_MB = 3008
TIMEOUT = Duration.minutes(10)


class MonitorSchedule(Construct):
    function: PythonFunction
    rule: events.Rule

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        image: Path,
        schedule: str,
        env_name: str,
        capture: PredictionCapture,
        artifacts_bucket: s3.IBucket,
        data_key: kms.IKey,
        log_key: kms.IKey,
        network: FunctionNetwork | None = None,
    ) -> None:
        super().__init__(scope, id)
        environment = backend_environment(artifacts_bucket=artifacts_bucket.bucket_name) | settings_environment(
            Settings, monitoring__capture_bucket=capture.bucket.bucket_name, monitoring__environment=env_name
        )
        self.function = PythonFunction(
            self,
            "Function",
            image=image,
            handler=MONITOR_HANDLER,
            description="clinrisk monitor: drift, estimated and realized performance and fairness over a window",
            data_key=data_key,
            log_key=log_key,
            environment=environment,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            reserved_concurrency=1,  # one run an hour; two at once would publish the same window twice
            network=network,
        )
        allow_read_objects(
            self.function.function, capture.bucket, key=capture.key, prefixes=(CAPTURE_PREFIX, KEYED_OUTCOMES_PREFIX)
        )
        allow_read_objects(self.function.function, artifacts_bucket, key=data_key, prefixes=SERVING_PREFIXES)
        self.rule = events.Rule(
            self, "Schedule", description="clinrisk: the monitor's run", schedule=events.Schedule.expression(schedule)
        )
        self.rule.add_target(
            targets.LambdaFunction(
                self.function.function,
                retry_attempts=2,
                max_event_age=Duration.hours(1),  # the next run covers the same window
                dead_letter_queue=self.function.dead_letters,
            )
        )
        acknowledge_function_findings(
            {
                self.function: "The monitor lists and GETs captures under captures/ and outcomes-keyed/ (Hive"
                " partitions Firehose makes at delivery time) and the model directories runs/<run_id>/model/ the"
                " serving pointer names, so object ARNs end in a prefix wildcard. X-Ray's PutTraceSegments and"
                " PutTelemetryRecords have no resource-level permissions, so tracing needs Resource '*'."
            }
        )
