"""ExplainStack: what answers `POST /v1/explain` and keeps its knowledge current.

Composition: the OpenSearch Serverless collection (the knowledge index and each deployed task's
similar-patient index),
the Bedrock guardrail and its version, the explain function (which the Serving stack's API routes
to) and the RAG ingest function (fed by the Foundation stack's knowledge bucket events). Only the
ingest role writes the knowledge index and only the promote role the similar-patient index (each
champion's documents); the explain role reads both. The collection endpoint is also kept in an SSM
parameter, which promote reads at run time (its stack is one this stack depends on).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cdk_app.constructs.explain_functions import ExplainFunctions
from cdk_app.constructs.guardrail import ExplanationGuardrail
from cdk_app.constructs.handoff_parameter import handoff_parameter
from cdk_app.constructs.pipeline_functions import collection_endpoint_parameter
from cdk_app.constructs.vector_collection import VectorCollection
from cdk_app.stacks.pipeline import PipelineStack
from cdk_app.stacks.props import ClinriskProps
from clinrisk.settings import ExplainSettings
from clinrisk.taskspec import catalogue

DESCRIPTION = "explanations (OpenSearch Serverless collection, Bedrock guardrail, explain and RAG ingest Lambdas)"


class ExplainStack(Stack):
    collection: VectorCollection
    guardrail: ExplanationGuardrail
    functions: ExplainFunctions

    def __init__(self, scope: Construct, id: str, *, props: ClinriskProps, pipeline: PipelineStack) -> None:
        super().__init__(scope, id, **props.naming(id, DESCRIPTION))
        config, foundation, name = props.config, props.foundation, props.name
        settings = ExplainSettings()
        self.collection = VectorCollection(
            self,
            "Collection",
            name=f"{name}-rag",
            key=foundation.keys.data,
            settings=settings,
            # The directory the app bundles and checked the tasks in (never CLINRISK_TASKS_DIR of the shell).
            tasks=[catalogue.find_task(task, catalogue.TASKS_DIR).spec for task in config.tasks],
            network=foundation.network,
        )
        self.guardrail = ExplanationGuardrail(self, "Guardrail", name=f"{name}-explanations")
        self.functions = ExplainFunctions(
            self,
            "Functions",
            artifacts_bucket=foundation.buckets.artifacts,
            knowledge_bucket=foundation.buckets.knowledge,
            queue=foundation.knowledge_events.queue,
            data_key=foundation.keys.data,
            log_key=foundation.keys.messaging,
            collection_endpoint=self.collection.endpoint,
            bedrock=config.bedrock,
            guardrail=self.guardrail,
            network=foundation.network,
        )
        self.collection.allow(
            knowledge_writer=self.functions.ingest.role,
            similar_writer=pipeline.functions.promote.role,
            readers=[self.functions.explain.role],
        )
        handoff_parameter(
            self, "CollectionEndpointParameter", name=collection_endpoint_parameter(config.env),
            value=self.collection.endpoint, what="The explanations' OpenSearch Serverless collection endpoint",
            reader="promote",
        )  # fmt: skip
        CfnOutput(self, "CollectionEndpoint", value=self.collection.endpoint)
        CfnOutput(self, "KnowledgeBucket", value=foundation.buckets.knowledge.bucket_name)
