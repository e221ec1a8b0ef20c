"""The explanations' cloud resources (issue 13 part 6), by property, never by logical id: the collection and
its policies, the indexes (the adapter's own mappings), the knowledge events, the two functions and their
permissions, the guardrail, the explain route and the alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdk_app.constructs.explain_alarms import DEGRADED_SHARE
from cdk_app.constructs.explain_functions import model_arns
from cdk_app.constructs.guardrail import DOSING_TOPIC, PII_ENTITIES
from cdk_app.constructs.knowledge_events import MAX_RECEIVES
from cdk_app.constructs.rest_api import EXPLAIN_PATH
from cdk_app.constructs.vector_collection import READ_PERMISSIONS, cfn_index_body, cfn_key
from clinrisk.adapters.opensearch import knowledge_index_body, similar_index_body
from clinrisk.serving.auth import RESOURCE_SERVER
from clinrisk.settings import ExplainSettings
from tests.infrastructure.conftest import VARIANT_CONTEXT, Synthesized, cdk_json_context
from tests.infrastructure.test_serving import api_routes, of_type, the_one

pytestmark = pytest.mark.infrastructure

EXPLAIN = "clinrisk-dev-explain"
FOUNDATION = "clinrisk-dev-foundation"
SERVING = "clinrisk-dev-serving"
PIPELINE = "clinrisk-dev-pipeline"
MONITORING = "clinrisk-dev-monitoring"
SETTINGS = ExplainSettings()

Resources = dict[str, dict[str, Any]]


def resources_of(synthesized: Synthesized, stack: str) -> Resources:
    found: Resources = synthesized.template(stack).to_json()["Resources"]
    return found


@pytest.fixture(scope="module")
def explain(synthesized: Synthesized) -> Resources:
    return resources_of(synthesized, EXPLAIN)


@pytest.fixture(scope="module")
def foundation(synthesized: Synthesized) -> Resources:
    return resources_of(synthesized, FOUNDATION)


def function_named(resources: Resources, handler: str) -> tuple[str, dict[str, Any]]:
    found = [
        (i, r) for i, r in of_type(resources, "AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler
    ]
    assert len(found) == 1, handler
    return found[0]


def role_of(resources: Resources, handler: str) -> str:
    _, function = function_named(resources, handler)
    role: str = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return role


def statements_of(resources: Resources, role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else list(statement["Action"])


def resources_allowed(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [
        resource
        for s in statements
        if action in actions(s)
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]


def policy_of(resources: Resources, policy_type: str) -> Any:
    """The one OpenSearch Serverless policy of `policy_type` (encryption, network, data), decoded."""
    kind = "AccessPolicy" if policy_type == "data" else "SecurityPolicy"
    found = [
        r["Properties"]["Policy"]
        for r in of_type(resources, f"AWS::OpenSearchServerless::{kind}").values()
        if r["Properties"]["Type"] == policy_type
    ]
    assert len(found) == 1, policy_type
    return decoded(found[0])


def decoded(value: Any) -> Any:
    """A JSON document CDK wrote as Fn::Join of strings and tokens; each token becomes the JSON text of its
    CloudFormation expression, so `token(...)` reads it back."""
    if isinstance(value, str):
        return json.loads(value)
    parts = value["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else json.dumps(json.dumps(p))[1:-1] for p in parts))


def token(text: str) -> Any:
    return json.loads(text)


# --------------------------------------------------------------------------- the collection


def test_the_collection_is_a_vector_search_collection_encrypted_with_the_data_key(explain: Resources) -> None:
    collection_id, collection = the_one(explain, "AWS::OpenSearchServerless::Collection")
    name = collection["Properties"]["Name"]
    assert collection["Properties"]["Type"] == "VECTORSEARCH"
    assert collection["Properties"]["StandbyReplicas"] == "DISABLED"  # the cost line in docs/deployment.md
    encryption = policy_of(explain, "encryption")
    assert encryption["AWSOwnedKey"] is False
    key = token(encryption["KmsARN"])["Fn::ImportValue"]
    assert key.startswith(f"{FOUNDATION}:") and "KeysData" in key  # the data key, customer-managed
    assert encryption["Rules"] == [{"ResourceType": "collection", "Resource": [f"collection/{name}"]}]
    # CloudFormation must create both security policies before the collection, or creation fails.
    policies = set(of_type(explain, "AWS::OpenSearchServerless::SecurityPolicy"))
    assert len(policies) == 2 and policies <= set(explain[collection_id]["DependsOn"])


def test_the_default_network_policy_is_public_behind_iam_and_the_vpc_variant_is_vpc_only(
    explain: Resources, synthesized_variant: Synthesized
) -> None:
    (public,) = policy_of(explain, "network")
    assert public["AllowFromPublic"] is True and "SourceVPCEs" not in public
    assert not of_type(explain, "AWS::OpenSearchServerless::VpcEndpoint")
    variant = resources_of(synthesized_variant, EXPLAIN)
    endpoint_id, endpoint = the_one(variant, "AWS::OpenSearchServerless::VpcEndpoint")
    assert len(endpoint["Properties"]["SubnetIds"]) == 2
    (private,) = policy_of(variant, "network")
    assert private["AllowFromPublic"] is False
    assert [token(t) for t in private["SourceVPCEs"]] == [{"Fn::GetAtt": [endpoint_id, "Id"]}]


def grants(resources: Resources) -> list[tuple[set[str], list[Any], str]]:
    """(permissions, principals as CloudFormation expressions, index) for every index rule of the data policy."""
    return [
        (set(rule["Permission"]), [token(p) for p in statement["Principal"]], index)
        for statement in policy_of(resources, "data")
        for rule in statement["Rules"]
        for index in rule["Resource"]
    ]


def test_ingest_writes_the_knowledge_index_promote_the_similar_index_and_explain_reads(explain: Resources) -> None:
    ingest = {"Fn::GetAtt": [role_of(explain, "rag_ingest.handler.handler"), "Arn"]}
    explainer = {"Fn::GetAtt": [role_of(explain, "lambdas.explain.handler.handler"), "Arn"]}
    collection = "index/clinrisk-dev-rag/"
    knowledge, similar = collection + SETTINGS.knowledge_index, collection + SETTINGS.similar_index
    heart = similar + "-heart-disease"  # each deployed task has its own similar-patient index
    rules = grants(explain)
    assert all(r["ResourceType"] == "index" for s in policy_of(explain, "data") for r in s["Rules"])
    writers = {index: principals for permissions, principals, index in rules if "aoss:WriteDocument" in permissions}
    assert set(writers) == {knowledge, similar, heart} and writers[knowledge] == [ingest]
    [promote] = writers[similar]
    assert writers[heart] == [promote]
    assert promote["Fn::ImportValue"].startswith(f"{PIPELINE}:") and "PromoteRole" in promote["Fn::ImportValue"]
    readers = {index: principals for permissions, principals, index in rules if permissions == set(READ_PERMISSIONS)}
    assert readers == {knowledge: [explainer], similar: [explainer], heart: [explainer]}
    # The deploy role may manage the indexes (CloudFormation creates them) but never read or write documents.
    deploy = [(p, principals) for p, principals, _ in rules if "aoss:CreateIndex" in p]
    assert deploy and all("cfn-exec-role" in json.dumps(principals) for _, principals in deploy)
    assert all(not p & {"aoss:ReadDocument", "aoss:WriteDocument"} for p, _ in deploy)


def test_api_access_is_granted_on_the_collection_only(explain: Resources) -> None:
    collection_id, _ = the_one(explain, "AWS::OpenSearchServerless::Collection")
    grants = [
        s
        for policy in of_type(explain, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "aoss:APIAccessAll" in actions(s)
    ]
    assert len(grants) == 3  # ingest, explain, promote
    assert all(s["Resource"] == {"Fn::GetAtt": [collection_id, "Arn"]} for s in grants)


# --------------------------------------------------------------------------- the indexes


def snake(key: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def from_cfn(value: Any, *, field_names: bool = False) -> Any:
    """The inverse of the construct's conversion, written independently: field names are kept."""
    if not isinstance(value, dict):
        return value
    if field_names:
        return {key: from_cfn(item) for key, item in value.items()}
    return {snake(key): from_cfn(item, field_names=key == "Properties") for key, item in value.items()}


HEART_SIMILAR = f"{SETTINGS.similar_index}-heart-disease"


@pytest.mark.parametrize(
    ("index_name", "body", "dimensions"),
    [
        (SETTINGS.knowledge_index, knowledge_index_body(SETTINGS.embedding_dimensions), SETTINGS.embedding_dimensions),
        # One dimension per factor: readmission's 28, heart disease's 13 feature columns (not the embedding's).
        (SETTINGS.similar_index, similar_index_body(28), 28),
        (HEART_SIMILAR, similar_index_body(13, ("sex", "age_band", "site")), 13),
    ],
)
def test_the_indexes_are_declared_with_the_adapters_own_mappings(
    explain: Resources, index_name: str, body: dict[str, Any], dimensions: int
) -> None:
    indexes = {r["Properties"]["IndexName"]: r for r in of_type(explain, "AWS::OpenSearchServerless::Index").values()}
    assert set(indexes) == {SETTINGS.knowledge_index, SETTINGS.similar_index, HEART_SIMILAR}
    declared = indexes[index_name]["Properties"]
    assert from_cfn(declared["Mappings"]) == body["mappings"]  # the adapter's mapping, field for field
    assert declared["Settings"] == cfn_index_body(body["settings"])
    vector = declared["Mappings"]["Properties"]["embedding"]
    assert vector["Type"] == "knn_vector" and vector["Dimension"] == dimensions
    assert vector["Method"]["Name"] == "hnsw"
    collection_id, _ = the_one(explain, "AWS::OpenSearchServerless::Collection")
    assert declared["CollectionEndpoint"] == {"Fn::GetAtt": [collection_id, "CollectionEndpoint"]}


def test_the_knowledge_index_has_bm25_text_fields(explain: Resources) -> None:
    indexes = {r["Properties"]["IndexName"]: r for r in of_type(explain, "AWS::OpenSearchServerless::Index").values()}
    fields = indexes[SETTINGS.knowledge_index]["Properties"]["Mappings"]["Properties"]
    assert fields["text"] == {"Type": "text"} and fields["heading"] == {"Type": "text"}


def test_cfn_keys_follow_the_cloudformation_spelling() -> None:
    assert [cfn_key(k) for k in ("space_type", "knn.algo_param.ef_search", "m", "ef_construction")] == [
        "SpaceType",
        "KnnAlgoParamEfSearch",
        "M",
        "EfConstruction",
    ]


# --------------------------------------------------------------------------- knowledge bucket and events


def test_the_knowledge_bucket_is_kms_encrypted_versioned_logged_and_sends_put_and_delete_to_the_queue(
    foundation: Resources,
) -> None:
    buckets = [
        r
        for r in of_type(foundation, "AWS::S3::Bucket").values()
        if "QueueConfigurations" in r["Properties"].get("NotificationConfiguration", {})
    ]
    assert len(buckets) == 1
    bucket = buckets[0]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert (
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "knowledge/"
    configurations = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert {c["Event"] for c in configurations} == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    queue_ids = {c["Queue"]["Fn::GetAtt"][0] for c in configurations}
    assert len(queue_ids) == 1
    queue = foundation[queue_ids.pop()]["Properties"]
    assert "KmsMasterKeyId" in queue
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == MAX_RECEIVES
    dead_letters = foundation[redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
    assert "KmsMasterKeyId" in dead_letters


def test_only_s3_from_the_knowledge_bucket_may_send_to_the_queue(foundation: Resources) -> None:
    statements = [
        s
        for policy in of_type(foundation, "AWS::SQS::QueuePolicy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Principal") == {"Service": "s3.amazonaws.com"}
    ]
    assert len(statements) == 1
    assert statements[0]["Action"] == "sqs:SendMessage"
    assert "aws:SourceArn" in statements[0]["Condition"]["ArnEquals"]


# --------------------------------------------------------------------------- functions


def test_the_ingest_function_reads_the_queue_and_reports_batch_item_failures(explain: Resources) -> None:
    function_id, function = function_named(explain, "rag_ingest.handler.handler")
    _, mapping = the_one(explain, "AWS::Lambda::EventSourceMapping")
    assert mapping["Properties"]["FunctionName"] == {"Ref": function_id}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "Fn::ImportValue" in mapping["Properties"]["EventSourceArn"]
    variables = function["Properties"]["Environment"]["Variables"]
    assert "Fn::ImportValue" in variables["CLINRISK_EXPLAIN__KNOWLEDGE_BUCKET"]
    assert "CLINRISK_EXPLAIN__OPENSEARCH_ENDPOINT" in variables
    statements = statements_of(explain, role_of(explain, "rag_ingest.handler.handler"))
    assert not resources_allowed(statements, "bedrock:ApplyGuardrail")
    assert resources_allowed(statements, "bedrock:InvokeModel") == model_arns_in_template(SETTINGS.embedding_model_id)


def model_arns_in_template(model_id: str) -> list[Any]:
    return [
        {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":bedrock:",
                    {"Ref": "AWS::Region"},
                    f"::foundation-model/{model_id}",
                ],
            ]
        }
    ]


def test_the_explain_function_gets_the_models_and_guardrail_from_cdk_json(explain: Resources) -> None:
    context = cdk_json_context()["bedrock"]
    _, function = function_named(explain, "lambdas.explain.handler.handler")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["CLINRISK_EXPLAIN__TEXT_MODEL_ID"] == context["textModelId"]
    assert variables["CLINRISK_EXPLAIN__EMBEDDING_MODEL_ID"] == context["embeddingModelId"]
    guardrail_id, _ = the_one(explain, "AWS::Bedrock::Guardrail")
    version_id, _ = the_one(explain, "AWS::Bedrock::GuardrailVersion")
    assert variables["CLINRISK_EXPLAIN__GUARDRAIL_ID"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}
    assert variables["CLINRISK_EXPLAIN__GUARDRAIL_VERSION"] == {"Fn::GetAtt": [version_id, "Version"]}
    assert function["Properties"]["Timeout"] < 29


def test_bedrock_permissions_name_the_models_and_the_guardrail_only(explain: Resources) -> None:
    context = cdk_json_context()["bedrock"]
    statements = statements_of(explain, role_of(explain, "lambdas.explain.handler.handler"))
    invoked = resources_allowed(statements, "bedrock:InvokeModel")
    expected = model_arns_in_template(context["textModelId"]) + model_arns_in_template(context["embeddingModelId"])
    assert sorted(map(json.dumps, invoked)) == sorted(map(json.dumps, expected))
    guardrail_id, _ = the_one(explain, "AWS::Bedrock::Guardrail")
    assert resources_allowed(statements, "bedrock:ApplyGuardrail") == [{"Fn::GetAtt": [guardrail_id, "GuardrailArn"]}]


def test_an_inference_profile_is_granted_with_the_model_it_routes_to(synthesized_variant: Synthesized) -> None:
    profile = VARIANT_CONTEXT["bedrock"]["textModelId"]
    assert profile.startswith("us.")
    variant = resources_of(synthesized_variant, EXPLAIN)
    _, function = function_named(variant, "lambdas.explain.handler.handler")
    assert function["Properties"]["Environment"]["Variables"]["CLINRISK_EXPLAIN__TEXT_MODEL_ID"] == profile
    invoked = json.dumps(
        resources_allowed(
            statements_of(variant, role_of(variant, "lambdas.explain.handler.handler")), "bedrock:InvokeModel"
        )
    )
    assert f"inference-profile/{profile}" in invoked
    assert f":bedrock:*::foundation-model/{profile.removeprefix('us.')}" in invoked


def test_model_arns_of_a_foundation_model_and_of_a_profile() -> None:
    from aws_cdk import App, Stack

    stack = Stack(App(), "S")
    assert len(model_arns(stack, "amazon.titan-embed-text-v2:0")) == 1
    assert len(model_arns(stack, "eu.amazon.nova-lite-v1:0")) == 2


# --------------------------------------------------------------------------- guardrail


def test_the_guardrail_filters_pii_grounds_answers_and_denies_dosing_advice(explain: Resources) -> None:
    _, guardrail = the_one(explain, "AWS::Bedrock::Guardrail")
    properties = guardrail["Properties"]
    pii = properties["SensitiveInformationPolicyConfig"]["PiiEntitiesConfig"]
    assert {p["Type"] for p in pii} == set(PII_ENTITIES) and "NAME" in PII_ENTITIES
    assert all(p["OutputAction"] == "ANONYMIZE" and p["InputAction"] == "BLOCK" for p in pii)
    grounding = {f["Type"]: f["Threshold"] for f in properties["ContextualGroundingPolicyConfig"]["FiltersConfig"]}
    assert set(grounding) == {"GROUNDING", "RELEVANCE"} and all(0 < t < 1 for t in grounding.values())
    topics = properties["TopicPolicyConfig"]["TopicsConfig"]
    assert [(t["Name"], t["Type"]) for t in topics] == [(DOSING_TOPIC, "DENY")]
    assert "dose" in topics[0]["Definition"]


# --------------------------------------------------------------------------- the route


def test_post_explain_needs_the_explain_scope_and_a_validated_body(synthesized: Synthesized) -> None:
    serving = resources_of(synthesized, SERVING)
    routes = api_routes(serving)
    explain_route = routes[("POST", EXPLAIN_PATH)]
    assert explain_route["AuthorizationType"] == "COGNITO_USER_POOLS"
    assert explain_route["AuthorizationScopes"] == [f"{RESOURCE_SERVER}/explain"]
    model = serving[explain_route["RequestModels"]["application/json"]["Ref"]]["Properties"]["Schema"]
    assert model["required"] == ["encounter"]
    validator = serving[explain_route["RequestValidatorId"]["Ref"]]["Properties"]
    assert validator["ValidateRequestBody"] is True
    uri = json.dumps(explain_route["Integration"]["Uri"])
    assert "Fn::ImportValue" in uri and EXPLAIN in uri
    permissions = [
        p["Properties"] for p in of_type(serving, "AWS::Lambda::Permission").values() if EXPLAIN in json.dumps(p)
    ]
    assert permissions and all(p["Principal"] == "apigateway.amazonaws.com" for p in permissions)


# --------------------------------------------------------------------------- alarms


def test_alarms_watch_dead_letters_degraded_share_and_throttles_of_each_model(synthesized: Synthesized) -> None:
    monitoring = resources_of(synthesized, MONITORING)
    alarms = [a["Properties"] for a in of_type(monitoring, "AWS::CloudWatch::Alarm").values()]
    names = {a["AlarmName"]: a for a in alarms}
    dead = names["clinrisk-dev-rag-ingest-dead-letters"]
    assert dead["MetricName"] == "ApproximateNumberOfMessagesVisible" and dead["Threshold"] == 1
    assert FOUNDATION in json.dumps(dead["Dimensions"])
    degraded = names["clinrisk-dev-explain-degraded"]
    assert degraded["Threshold"] == DEGRADED_SHARE
    expressions = {m["Id"]: m for m in degraded["Metrics"]}
    assert {expressions[i]["MetricStat"]["Metric"]["MetricName"] for i in ("degraded", "total")} == {
        "DegradedExplanations",
        "Explanations",
    }
    context = cdk_json_context()["bedrock"]
    throttled = {
        d["Value"]
        for a in alarms
        if a.get("MetricName") == "InvocationThrottles"
        for d in a["Dimensions"]
        if d["Name"] == "ModelId"
    }
    assert throttled == {context["textModelId"], context["embeddingModelId"]}
    for name in ("clinrisk-dev-rag-ingest-dead-letters", "clinrisk-dev-explain-degraded"):
        assert names[name]["AlarmActions"] and names[name]["OKActions"]


def test_the_dashboard_shows_the_explanations(synthesized: Synthesized) -> None:
    monitoring = resources_of(synthesized, MONITORING)
    _, dashboard = the_one(monitoring, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ("Explanations", "Bedrock throttles", "Knowledge ingest dead letters"):
        assert title in body
