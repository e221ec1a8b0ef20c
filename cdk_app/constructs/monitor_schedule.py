"""The scheduled monitor: an EventBridge schedule (`monitorSchedule`, hourly by default) runs the monitor
function from the monitoring image, which reads the window's captures (and keyed outcomes) from the
capture bucket and each served version's monitoring reference from the artifacts bucket, and writes
the metrics as EMF lines to its own log group, from which CloudWatch extracts them. So `FeatureDrift`
(the retraining trigger's metric, under `Environment`) has its producer here.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_app.constructs.image_functions import FunctionSizing, ImageFunctions, RuleDrivenFunction
from cdk_app.constructs.predict_service import SERVING_PREFIXES
from cdk_app.constructs.prediction_capture import CAPTURE_PREFIX, KEYED_OUTCOMES_PREFIX, PredictionCapture
from cdk_app.constructs.python_function import acknowledge_function_findings
from cdk_app.environment import backend_environment, settings_environment
from cdk_app.monitoring_image import MONITOR_HANDLER
from cdk_app.permissions import allow_read_objects
from clinrisk.settings import Settings

# A million captured records took 7.6 s and 0.86 GiB locally (benchmarks/monitoring.py); the downloads
# from S3 come on top, so the function has room for both. One run an hour, so one at a time: two at
# once would publish the same window twice.
SIZING = FunctionSizing(memory_size=3008, timeout=Duration.minutes(10), reserved_concurrency=1)


class MonitorSchedule(RuleDrivenFunction):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        functions: ImageFunctions,
        schedule: str,
        env_name: str,
        capture: PredictionCapture,
        artifacts_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, id)
        environment = backend_environment(artifacts_bucket=artifacts_bucket.bucket_name) | settings_environment(
            Settings, monitoring__capture_bucket=capture.bucket.bucket_name, monitoring__environment=env_name
        )
        self.function = functions.function(
            self,
            handler=MONITOR_HANDLER,
            description="clinrisk monitor: drift, estimated and realized performance and fairness over a window",
            environment=environment,
            sizing=SIZING,
        )
        allow_read_objects(
            self.function.function, capture.bucket, key=capture.key, prefixes=(CAPTURE_PREFIX, KEYED_OUTCOMES_PREFIX)
        )
        allow_read_objects(self.function.function, artifacts_bucket, key=functions.data_key, prefixes=SERVING_PREFIXES)
        self._run_on(
            events.Rule(
                self,
                "Schedule",
                description="clinrisk: the monitor's run",
                schedule=events.Schedule.expression(schedule),
            ),
            retry_attempts=2,
            max_event_age=Duration.hours(1),  # the next run covers the same window
        )
        acknowledge_function_findings(
            {
                self.function: "The monitor lists and GETs captures under captures/ and outcomes-keyed/ (Hive"
                " partitions Firehose makes at delivery time) and the model directories runs/<run_id>/model/ the"
                " serving pointer names, so object ARNs end in a prefix wildcard. X-Ray's PutTraceSegments and"
                " PutTelemetryRecords have no resource-level permissions, so tracing needs Resource '*'."
            }
        )
