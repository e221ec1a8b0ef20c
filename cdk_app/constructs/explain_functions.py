"""The explanation functions, both from the `explain` bundle: the explain API function and the RAG ingest.

- explain (`POST /v1/explain`): scores like predict (reads the serving pointer and the model
  directories it names), retrieves from the collection, writes with Bedrock Converse through the
  guardrail. It may invoke only the configured text and embedding models (and, for an inference
  profile id, that profile and the foundation model it routes to) and apply only the guardrail.
- rag_ingest: SQS event source on the knowledge queue, reporting batch item failures, so only the
  failed messages are retried and reach the dead-letter queue; reads only the knowledge bucket and
  invokes only the embedding model.

Model ids come from cdk.json (`bedrock`); the settings' variable names are derived from the
settings model (cdk_app.environment).
"""

from __future__ import annotations

import re

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.config import BedrockContext
from cdk_app.constructs.guardrail import ExplanationGuardrail
from cdk_app.constructs.network import PrivateNetwork
from cdk_app.constructs.predict_service import METRICS_NAMESPACE, SERVING_PREFIXES
from cdk_app.constructs.python_function import NETWORK_INTERFACE_REASON, PythonFunction
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources
from cdk_app.environment import backend_environment, settings_environment
from cdk_app.permissions import allow_read_objects
from clinrisk.settings import ExplainSettings, Settings

# A cross-region inference profile id starts with its geography (us.amazon.nova-lite-v1:0).
PROFILE_PREFIX = re.compile(r"^(us|eu|apac|jp|au|ca|global|us-gov)\.")
# The whole-request budget (ExplainSettings.budget_seconds) plus the cold start, under API Gateway's 29 s.
EXPLAIN_TIMEOUT = Duration.seconds(20)
INGEST_TIMEOUT = Duration.minutes(1)
INGEST_BATCH_SIZE = 10


def model_arns(scope: Construct, model_id: str) -> list[str]:
    """What `bedrock:InvokeModel` names for `model_id`: the foundation model, or the inference profile and
    the foundation model in the regions the profile routes to (which the profile, not this app, chooses)."""
    stack = Stack.of(scope)
    base = PROFILE_PREFIX.sub("", model_id)
    if base == model_id:
        return [f"arn:{stack.partition}:bedrock:{stack.region}::foundation-model/{model_id}"]
    return [
        f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:inference-profile/{model_id}",
        f"arn:{stack.partition}:bedrock:*::foundation-model/{base}",
    ]


def allow_invoke_models(function: PythonFunction, *model_ids: str) -> None:
    arns = [arn for model_id in model_ids for arn in model_arns(function, model_id)]
    function.role.add_to_policy(iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=arns))


class ExplainFunctions(Construct):
    explain: PythonFunction
    ingest: PythonFunction

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        artifacts_bucket: s3.IBucket,
        knowledge_bucket: s3.IBucket,
        queue: sqs.IQueue,
        data_key: kms.IKey,
        log_key: kms.IKey,
        collection_endpoint: str,
        bedrock: BedrockContext,
        guardrail: ExplanationGuardrail,
        network: PrivateNetwork | None = None,
    ) -> None:
        super().__init__(scope, id)
        text_model_id, embedding_model_id = bedrock.text_model_id, bedrock.embedding_model_id
        common = {
            **backend_environment(artifacts_bucket=artifacts_bucket.bucket_name),
            **settings_environment(
                Settings,
                explain__opensearch_endpoint=collection_endpoint,
                explain__embedding_model_id=embedding_model_id,
                explain__embedding_dimensions=str(ExplainSettings().embedding_dimensions),
            ),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        self.explain = PythonFunction(
            self,
            "Explain",
            bundle="explain",
            handler="lambdas.explain.handler.handler",
            description="clinrisk explanations: POST /v1/explain (Bedrock Converse over retrieved passages)",
            data_key=data_key,
            log_key=log_key,
            environment={
                **common,
                **settings_environment(
                    Settings,
                    explain__text_model_id=text_model_id,
                    explain__guardrail_id=guardrail.guardrail_id,
                    explain__guardrail_version=guardrail.version,
                ),
            },
            memory_size=1024,
            timeout=EXPLAIN_TIMEOUT,
            network=network,
        )
        allow_read_objects(self.explain.function, artifacts_bucket, key=data_key, prefixes=SERVING_PREFIXES)
        allow_invoke_models(self.explain, text_model_id, embedding_model_id)
        self.explain.role.add_to_policy(
            iam.PolicyStatement(actions=["bedrock:ApplyGuardrail"], resources=[guardrail.arn])
        )
        self.ingest = PythonFunction(
            self,
            "Ingest",
            bundle="explain",
            handler="rag_ingest.handler.handler",
            description="clinrisk knowledge ingest: S3 events (via SQS) → chunks in the OpenSearch collection",
            data_key=data_key,
            log_key=log_key,
            environment={
                **common,
                **settings_environment(Settings, explain__knowledge_bucket=knowledge_bucket.bucket_name),
            },
            timeout=INGEST_TIMEOUT,
            network=network,
        )
        allow_read_objects(self.ingest.function, knowledge_bucket, key=data_key)
        allow_invoke_models(self.ingest, embedding_model_id)
        self.ingest.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                resources=[queue.queue_arn],
            )
        )
        self.ingest.role.add_to_policy(iam.PolicyStatement(actions=["kms:Decrypt"], resources=[data_key.key_arn]))
        mapping = self.ingest.function.add_event_source_mapping(
            "KnowledgeEvents",
            event_source_arn=queue.queue_arn,
            batch_size=INGEST_BATCH_SIZE,
            report_batch_item_failures=True,
        )
        acknowledge(
            mapping,
            "Serverless-LambdaEventSourceMappingDestination",
            "An SQS event source has no on-failure destination in Lambda (that is for streams); a message that"
            " keeps failing moves to the knowledge queue's dead-letter queue through its redrive policy, alarmed.",
        )
        self._acknowledge(network is not None)

    def _acknowledge(self, in_vpc: bool) -> None:
        network = " " + NETWORK_INTERFACE_REASON if in_vpc else ""
        acknowledge_wildcard_resources(
            self.explain.role,
            "Explanations score like predict: they GET the serving pointer and the model directories"
            " runs/<run_id>/model/ it names, whose run ids are known only at run time. A cross-region inference"
            " profile routes to its foundation model in regions the profile chooses, so that model's ARN has a"
            " wildcard region. X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level"
            " permissions." + network,
        )
        acknowledge_wildcard_resources(
            self.ingest.role,
            "Ingest reads whichever knowledge document an S3 event names, anywhere in the knowledge bucket, which"
            " holds only those documents (no patient data). X-Ray's PutTraceSegments and PutTelemetryRecords"
            " have no resource-level permissions." + network,
        )
