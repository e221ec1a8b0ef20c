"""FoundationStack: keys, buckets and topics that every other clinrisk stack builds on, and with
`vpc=true` the private network every function and the training job run in."""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from cdk_app.config import ClinriskConfig
from cdk_app.constructs.buckets import Buckets
from cdk_app.constructs.keys import EncryptionKeys
from cdk_app.constructs.knowledge_events import KnowledgeEvents
from cdk_app.constructs.network import PrivateNetwork, endpoint_specs
from cdk_app.constructs.prediction_capture import PredictionCapture
from cdk_app.constructs.topics import Topics
from cdk_app.naming import stack_naming


class FoundationStack(Stack):
    keys: EncryptionKeys
    buckets: Buckets
    topics: Topics
    knowledge_events: KnowledgeEvents
    network: PrivateNetwork | None
    capture: PredictionCapture

    def __init__(self, scope: Construct, id: str, *, config: ClinriskConfig) -> None:
        super().__init__(scope, id, **stack_naming(config.env, id, "KMS keys, S3 buckets and SNS topics"))
        self.keys = EncryptionKeys(self, "Keys", env_name=config.env)
        self.buckets = Buckets(self, "Buckets", key=self.keys.data, env_name=config.env)
        self.knowledge_events = KnowledgeEvents(self, "KnowledgeEvents", buckets=self.buckets, key=self.keys.data)
        self.topics = Topics(self, "Topics", key=self.keys.messaging, alarm_email=config.alarm_email)
        self.capture = PredictionCapture(
            self, "Capture", env_name=config.env, bucket=self.buckets.capture, key=self.keys.data,
            retention_days=config.capture_retention_days,
        )  # fmt: skip
        self.network = (
            PrivateNetwork(
                self,
                "Network",
                log_key=self.keys.messaging,
                endpoints=endpoint_specs(sagemaker_serving=config.serving_mode == "sagemaker"),
            )
            if config.vpc
            else None
        )
