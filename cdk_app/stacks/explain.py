"""ExplainStack: what answers `POST /v1/explain` and keeps its knowledge current.

Composition: the OpenSearch Serverless collection (the knowledge and similar-patient indexes),
the Bedrock guardrail and its version, the explain function (which the Serving stack's API routes
to) and the RAG ingest function (fed by the Foundation stack's knowledge bucket events). Only the
ingest role writes the knowledge index; the explain and promote roles read.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cdk_app.constructs.explain_functions import ExplainFunctions
from cdk_app.constructs.guardrail import ExplanationGuardrail
from cdk_app.constructs.vector_collection import VectorCollection
from cdk_app.stacks.pipeline import PipelineStack
from cdk_app.stacks.props import ClinriskProps
from clinrisk.settings import ExplainSettings

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
            writer=self.functions.ingest.role,
            readers=[self.functions.explain.role, pipeline.functions.promote.role],
        )
        CfnOutput(self, "CollectionEndpoint", value=self.collection.endpoint)
        CfnOutput(self, "KnowledgeBucket", value=foundation.buckets.knowledge.bucket_name)
