"""Security-critical properties of the foundation stack, by property and Match, never by logical id."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from cdk_app.constructs.topics import Topics
from tests.infrastructure.conftest import ALARM_EMAIL, Synthesized

pytestmark = pytest.mark.infrastructure

FOUNDATION = "clinrisk-dev-foundation"
BUCKETS = 4
KMS_KEY_ARN = {"Fn::GetAtt": [Match.any_value(), "Arn"]}


@pytest.fixture(scope="module")
def foundation(synthesized: Synthesized) -> Template:
    return synthesized.template(FOUNDATION)


def test_kms_keys_rotate(foundation: Template) -> None:
    foundation.resource_count_is("AWS::KMS::Key", 2)
    foundation.all_resources_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_buckets_are_versioned_private_logged_and_encrypted(foundation: Template) -> None:
    foundation.resource_count_is("AWS::S3::Bucket", BUCKETS)
    foundation.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": Match.any_value(),
        },
    )
    kms_bucket = {
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [
                Match.object_like(
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KMS_KEY_ARN}}
                )
            ]
        },
        "LoggingConfiguration": {
            "DestinationBucketName": {"Ref": Match.any_value()},
            "LogFilePrefix": Match.any_value(),
        },
    }
    # Every bucket but the access-log bucket (SSE-S3, the only encryption log delivery accepts).
    assert len(foundation.find_resources("AWS::S3::Bucket", {"Properties": kms_bucket})) == BUCKETS - 1


def test_every_bucket_policy_denies_insecure_transport(foundation: Template) -> None:
    foundation.resource_count_is("AWS::S3::BucketPolicy", BUCKETS)
    deny_http = Match.object_like(
        {"Effect": "Deny", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    )
    foundation.all_resources_properties(
        "AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([deny_http])}}
    )


def test_old_model_artifacts_move_to_glacier_after_90_days(foundation: Template) -> None:
    rules = Match.array_with(
        [
            Match.object_like(
                {
                    "NoncurrentVersionTransitions": [{"StorageClass": "GLACIER", "TransitionInDays": 90}],
                    "Status": "Enabled",
                }
            ),
            # Current objects under runs/ include the serving champion: Instant Retrieval, so GETs still work.
            Match.object_like(
                {"Prefix": "runs/", "Transitions": [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]}
            ),
        ]
    )
    foundation.has_resource_properties("AWS::S3::Bucket", {"LifecycleConfiguration": {"Rules": rules}})


def test_topics_are_kms_encrypted_and_ssl_only(foundation: Template) -> None:
    foundation.resource_count_is("AWS::SNS::Topic", 2)
    foundation.all_resources_properties("AWS::SNS::Topic", {"KmsMasterKeyId": KMS_KEY_ARN})
    deny_http = Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    foundation.all_resources_properties(
        "AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": Match.array_with([deny_http])}}
    )


def test_alarm_email_subscribes_with_a_dead_letter_queue(foundation: Template) -> None:
    foundation.resource_count_is("AWS::SNS::Subscription", 2)
    foundation.all_resources_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": ALARM_EMAIL, "RedrivePolicy": {"deadLetterTargetArn": Match.any_value()}},
    )
    foundation.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": KMS_KEY_ARN})


def test_no_subscription_without_alarm_email() -> None:
    # The construct alone: cheaper than a second synthesis of the whole app.
    stack = Stack(App(), "Topics")
    Topics(stack, "Topics", key=kms.Key(stack, "Key", enable_key_rotation=True), alarm_email=None)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SNS::Subscription", 0)
    template.resource_count_is("AWS::SQS::Queue", 0)


def _key_statements_for(foundation: Template, service: str) -> list[dict[str, Any]]:
    """Every key-policy statement that names `service` as a principal, over both keys."""
    found = []
    for key in foundation.find_resources("AWS::KMS::Key").values():
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            services = statement.get("Principal", {}).get("Service", [])
            if service in (services if isinstance(services, list) else [services]):
                found.append(statement)
    return found


def test_alarms_may_use_the_messaging_key_from_this_account_only(foundation: Template) -> None:
    (statement,) = _key_statements_for(foundation, "cloudwatch.amazonaws.com")
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(statement["Action"])
    assert "aws:SourceAccount" in statement["Condition"]["StringEquals"]


def test_eventbridge_may_use_the_messaging_key_without_a_source_account_condition(foundation: Template) -> None:
    """EventBridge's deliveries to an encrypted topic carry no aws:SourceAccount: a statement that
    requires it never matches, and the rules' notifications are dropped without an error."""
    (statement,) = _key_statements_for(foundation, "events.amazonaws.com")
    assert statement["Effect"] == "Allow"
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(statement["Action"])
    assert "aws:SourceAccount" not in json.dumps(statement)


def test_batch_scoring_work_files_in_the_data_bucket_expire(foundation: Template) -> None:
    """They are copies of patient rows, needed only while a batch run lasts."""
    for prefix in ("batch-scoring/work/", "batch-scoring/map-results/"):
        foundation.has_resource_properties(
            "AWS::S3::Bucket",
            {
                "LifecycleConfiguration": {
                    "Rules": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Prefix": prefix,
                                    "ExpirationInDays": 7,
                                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                                    "Status": "Enabled",
                                }
                            )
                        ]
                    )
                }
            },
        )
