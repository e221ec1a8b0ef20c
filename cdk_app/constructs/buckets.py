"""The S3 buckets: training data, model artifacts, prediction capture, and their access logs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_app.compliance import acknowledge

# Model artifacts of past runs are rarely read after a quarter but must be kept for audit.
ARCHIVE_AFTER = Duration.days(90)
# Where the pipeline writes each run's channels, model and reports (clinrisk.pipeline.contracts.run_prefix).
RUNS_PREFIX = "runs/"
# The champion's model directory is under runs/ too and serving (and rollback) GET it directly, so
# current objects there go to Glacier Instant Retrieval, which needs no restore before a GET.
# Replaced versions are never read by serving and go to Glacier Flexible Retrieval.
RUNS_ARCHIVE_CLASS = s3.StorageClass.GLACIER_INSTANT_RETRIEVAL
# Batch scoring's intermediate files in the data bucket (cdk_app/constructs/batch_scoring_functions.py).
# A run lasts hours at most; a week leaves time to look into a failed one.
BATCH_WORK_PREFIXES = {"work": "batch-scoring/work/", "map-results": "batch-scoring/map-results/"}
BATCH_WORK_EXPIRY = Duration.days(7)


class Buckets(Construct):
    """Every bucket is versioned, SSL-only, private, KMS-encrypted and logs its accesses."""

    access_logs: s3.Bucket
    data: s3.Bucket
    artifacts: s3.Bucket
    capture: s3.Bucket
    knowledge: s3.Bucket
    knowledge_bucket_name: str

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey, env_name: str) -> None:
        super().__init__(scope, id)
        self._key = key
        self.access_logs = self._access_log_bucket()
        self.data = self._bucket(
            "Data",
            lifecycle_rules=[
                # Batch scoring's work files are copies of patient rows, needed only while a run lasts.
                s3.LifecycleRule(
                    id=f"Expire{name.title().replace('-', '')}",
                    prefix=prefix,
                    expiration=BATCH_WORK_EXPIRY,
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
                for name, prefix in BATCH_WORK_PREFIXES.items()
            ],
        )
        # Its events go to EventBridge, where the Monitoring stack's rule picks up outcome files
        # (cdk_app/constructs/outcome_intake.py); set on the CloudFormation resource, because the CDK's
        # helper for it adds a custom-resource Lambda.
        cfn_data = self.data.node.default_child
        assert isinstance(cfn_data, s3.CfnBucket)
        cfn_data.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )
        self.artifacts = self._bucket(
            "Artifacts",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ArchiveReplacedArtifacts",
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.GLACIER, transition_after=ARCHIVE_AFTER
                        )
                    ],
                ),
                s3.LifecycleRule(
                    id="ArchiveOldRuns",
                    prefix=RUNS_PREFIX,
                    transitions=[s3.Transition(storage_class=RUNS_ARCHIVE_CLASS, transition_after=ARCHIVE_AFTER)],
                ),
            ],
        )
        self.capture = self._bucket("Capture")
        # The explanations' knowledge documents (no patient data). Named, so that the event queue's policy can
        # name it without referring to the bucket, which refers to the queue (cdk_app/constructs/knowledge_events.py).
        stack = Stack.of(self)
        self.knowledge_bucket_name = f"clinrisk-{env_name}-knowledge-{stack.account}-{stack.region}"
        self.knowledge = self._bucket("Knowledge", bucket_name=self.knowledge_bucket_name)
        self._acknowledge_findings()

    def _acknowledge_findings(self) -> None:
        for bucket in (self.access_logs, self.data, self.artifacts, self.capture, self.knowledge):
            acknowledge(
                bucket,
                "HIPAA.Security-S3BucketReplicationEnabled",
                "Recovery relies on versioning (every overwritten or deleted object stays restorable) and on"
                " RETAIN at stack deletion. Cross-region replication needs a destination region and a replica"
                " KMS key chosen per deployment, which this environment-agnostic app cannot name yet.",
            )
        acknowledge(
            self.access_logs,
            "HIPAA.Security-S3DefaultEncryptionKMS",
            "S3 server access logging delivers only to buckets encrypted with SSE-S3, not SSE-KMS. The bucket"
            " is still encrypted (SSE-S3), SSL-only and private, and holds request metadata, not patient data.",
        )

    def _access_log_bucket(self) -> s3.Bucket:
        # S3 server access logging cannot deliver to an SSE-KMS bucket, hence SSE-S3 here only.
        return self._secure_bucket(
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ArchiveAccessLogs",
                    transitions=[s3.Transition(storage_class=s3.StorageClass.GLACIER, transition_after=ARCHIVE_AFTER)],
                )
            ],
        )

    def _bucket(
        self, id: str, *, lifecycle_rules: list[s3.LifecycleRule] | None = None, bucket_name: str | None = None
    ) -> s3.Bucket:
        """A KMS-encrypted bucket whose access logs go to the access-log bucket under `<id in lower case>/`."""
        return self._secure_bucket(
            id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self._key,
            bucket_key_enabled=True,  # one KMS call per object set instead of per object: cost and throttling
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{id.lower()}/",
            lifecycle_rules=lifecycle_rules,
            bucket_name=bucket_name,
        )

    def _secure_bucket(self, id: str, **props: Any) -> s3.Bucket:
        """The settings every clinrisk bucket shares; `props` adds encryption, logging and lifecycle."""
        return s3.Bucket(
            self,
            id,
            versioned=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            removal_policy=RemovalPolicy.RETAIN,  # patient data and model lineage outlive a stack
            **props,
        )
