"""The OpenSearch Serverless VECTORSEARCH collection of the explanations, its policies and its indexes:
the knowledge index, and one similar-patient index per deployed task (each task's vectors have one
dimension per factor of its own, and its documents its own coded fields).

- Encryption: the data key (customer-managed KMS), by an encryption policy naming the collection.
- Network: the collection's endpoint is public but IAM-only (SigV4, `aoss:APIAccessAll`), or, in
  the VPC variant, reachable only through an OpenSearch Serverless VPC endpoint in the isolated subnets.
- Data access: only the ingest role writes documents of the knowledge index; readers (explain,
  promote) read the indexes; the CloudFormation deploy role may only create, describe and update
  the indexes, which `AWS::OpenSearchServerless::Index` does with the deployer's credentials.
- Indexes: declared with `AWS::OpenSearchServerless::Index` from the adapter's own bodies
  (`clinrisk.adapters.opensearch`), so the deployed mapping is the one the code queries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnResource, DefaultStackSynthesizer, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_opensearchserverless as aoss
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.network import PrivateNetwork
from clinrisk.adapters.opensearch import knowledge_index_body, task_similar_index
from clinrisk.settings import DEFAULT_TASK, ExplainSettings
from clinrisk.taskspec.spec import TaskSpec

# Index-level permissions of the data access policy (OpenSearch Serverless names them per resource type).
READ_PERMISSIONS = ("aoss:DescribeIndex", "aoss:ReadDocument")
WRITE_PERMISSIONS = ("aoss:DescribeIndex", "aoss:ReadDocument", "aoss:WriteDocument", "aoss:UpdateIndex")
DEPLOY_PERMISSIONS = ("aoss:CreateIndex", "aoss:DescribeIndex", "aoss:UpdateIndex", "aoss:DeleteIndex")


def cfn_key(key: str) -> str:
    """An OpenSearch setting or mapping key as CloudFormation spells it: `space_type` → SpaceType,
    `knn.algo_param.ef_search` → KnnAlgoParamEfSearch, `m` → M."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[._]", key))


def cfn_index_body(value: Any, *, field_names: bool = False) -> Any:
    """An index body (settings and mappings) as `AWS::OpenSearchServerless::Index` properties. The keys of a
    `properties` object are field names, which stay as they are (`chunk_id`, not ChunkId)."""
    if not isinstance(value, dict):
        return value
    if field_names:
        return {key: cfn_index_body(item) for key, item in value.items()}
    return {cfn_key(key): cfn_index_body(item, field_names=key == "properties") for key, item in value.items()}


class VectorCollection(Construct):
    """`endpoint` is what the adapters' `opensearch_endpoint` setting holds; `arn` is what IAM grants name."""

    collection: aoss.CfnCollection
    endpoint: str
    arn: str
    indexes: dict[str, CfnResource]
    vpc_endpoint: aoss.CfnVpcEndpoint | None

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        key: kms.IKey,
        settings: ExplainSettings,
        tasks: Sequence[TaskSpec],
        network: PrivateNetwork | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.name = name
        # The embedding dimensions and the index names, as the explain functions read them.
        dimensions = settings.embedding_dimensions
        knowledge_index = self._knowledge_index = settings.knowledge_index
        similar = {spec.name: task_similar_index(settings.similar_index, spec) for spec in tasks}
        self._similar_indexes = [name for name, _ in similar.values()]
        stack = Stack.of(self)
        rules = [{"ResourceType": "collection", "Resource": [f"collection/{name}"]}]
        encryption = aoss.CfnSecurityPolicy(
            self,
            "Encryption",
            name=name,
            type="encryption",
            policy=stack.to_json_string({"Rules": rules, "AWSOwnedKey": False, "KmsARN": key.key_arn}),
        )
        self.vpc_endpoint = self._vpc_endpoint(network) if network is not None else None
        access: dict[str, Any] = (
            {"AllowFromPublic": False, "SourceVPCEs": [self.vpc_endpoint.attr_id]}
            if self.vpc_endpoint is not None
            else {"AllowFromPublic": True}
        )
        network_policy = aoss.CfnSecurityPolicy(
            self, "Network", name=name, type="network", policy=stack.to_json_string([{"Rules": rules, **access}])
        )
        self.collection = aoss.CfnCollection(
            self,
            "Collection",
            name=name,
            type="VECTORSEARCH",
            standby_replicas="DISABLED",  # no standby OCUs: the minimum bill (docs/deployment.md)
            description="clinrisk explanations: knowledge passages and similar past encounters",
        )
        self.collection.add_resource_dependency(encryption)
        self.collection.add_resource_dependency(network_policy)
        self.endpoint, self.arn = self.collection.attr_collection_endpoint, self.collection.attr_arn
        self.indexes = {
            knowledge_index: self._index("KnowledgeIndex", knowledge_index, knowledge_index_body(dimensions))
        }
        for task, (index_name, body) in similar.items():
            # Readmission's keeps the logical id it had before there were tasks.
            suffix = "" if task == DEFAULT_TASK else "".join(part.title() for part in task.replace("_", "-").split("-"))
            self.indexes[index_name] = self._index(f"SimilarIndex{suffix}", index_name, body)

    def _vpc_endpoint(self, network: PrivateNetwork) -> aoss.CfnVpcEndpoint:
        return aoss.CfnVpcEndpoint(
            self,
            "VpcEndpoint",
            name=self.name,
            vpc_id=network.vpc.vpc_id,
            subnet_ids=network.subnet_ids,
            security_group_ids=[network.endpoint_security_group.security_group_id],
        )

    def _index(self, id: str, index_name: str, body: dict[str, Any]) -> CfnResource:
        index = CfnResource(
            self,
            id,
            type="AWS::OpenSearchServerless::Index",
            properties={
                "CollectionEndpoint": self.endpoint,
                "IndexName": index_name,
                **cfn_index_body({"settings": body["settings"], "mappings": body["mappings"]}),
            },
        )
        index.add_resource_dependency(self.collection)
        return index

    def allow(self, *, knowledge_writer: iam.IRole, similar_writer: iam.IRole, readers: Sequence[iam.IRole]) -> None:
        """The data access policy (once) and `aoss:APIAccessAll` on this collection for every role in it:
        each index has one writer (ingest the knowledge index, promote the similar-patient indexes), and
        `readers` read them all."""
        index_arn = f"index/{self.name}/"
        deploy_role = _deploy_role_arn(self)
        knowledge, similar = index_arn + self._knowledge_index, [index_arn + name for name in self._similar_indexes]
        statements = [
            _access_rule([knowledge_writer.role_arn], [knowledge], WRITE_PERMISSIONS, "ingest writes passages"),
            _access_rule([similar_writer.role_arn], similar, WRITE_PERMISSIONS, "promote loads similar patients"),
            _access_rule([r.role_arn for r in readers], [knowledge, *similar], READ_PERMISSIONS, "explain reads"),
            _access_rule(
                [deploy_role], [knowledge, *similar], DEPLOY_PERMISSIONS, "CloudFormation declares the indexes"
            ),
        ]
        data_access = aoss.CfnAccessPolicy(
            self, "DataAccess", name=self.name, type="data", policy=Stack.of(self).to_json_string(statements)
        )
        for index in self.indexes.values():
            index.add_resource_dependency(data_access)
        for number, role in enumerate((knowledge_writer, *readers, similar_writer)):
            # A policy of its own, in this stack: added to a role of another stack (promote's) through that
            # role's default policy, the grant would make that stack depend on this one, which depends on it.
            api_access = iam.Policy(
                self,
                f"ApiAccess{number}",
                roles=[role],
                statements=[iam.PolicyStatement(actions=["aoss:APIAccessAll"], resources=[self.arn])],
            )
            acknowledge(
                api_access,
                "HIPAA.Security-IAMNoInlinePolicy",
                "The one statement that lets this role call the collection's data plane lives with the collection"
                " and is created and deleted with it; the data access policy is what limits the role to its indexes.",
            )


def _access_rule(principals: list[str], indexes: list[str], permissions: Sequence[str], why: str) -> dict[str, Any]:
    return {
        "Description": why,
        "Rules": [{"ResourceType": "index", "Resource": indexes, "Permission": list(permissions)}],
        "Principal": principals,
    }


def _deploy_role_arn(scope: Construct) -> str:
    """The role CloudFormation deploys with (the bootstrap's cfn-exec role), which creates the indexes."""
    template = DefaultStackSynthesizer.DEFAULT_CLOUDFORMATION_ROLE_ARN
    return Fn.sub(template.replace("${Qualifier}", DefaultStackSynthesizer.DEFAULT_QUALIFIER))
